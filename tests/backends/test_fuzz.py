"""Property test of the bitsandbytes backend's layer entry point (issue 11, "the rule from now
on"): random formats, device strings, thresholds, block sizes and Linear shapes give a module whose
output is finite on finite input, or ValueError/TypeError -- never another exception type."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from qlab.backends.bitsandbytes import check_device
from qlab.backends.bitsandbytes.linear import quantized_linear

DEVICES = st.sampled_from(["cpu", "CPU", "gpu", "", "cuda", "cuda:0", "cpu:0", "mps", " cpu", None, 0, torch.device("cpu")])


@settings(max_examples=40, deadline=None)
@given(device=DEVICES)
def test_device_strings(device):
    try:
        dev = check_device(device)
    except (ValueError, TypeError):
        return
    assert dev.type == "cpu" or torch.cuda.is_available()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.sampled_from(["nf4", "fp4", "fp4_bnb", "int8", "int4", "", None]),
       threshold=st.one_of(st.sampled_from([0.0, 6.0, -1.0, float("nan"), float("inf")]), st.just("6")),
       block=st.sampled_from([32, 64, 48, 0, -64]), d_in=st.sampled_from([64, 128]), d_out=st.sampled_from([32, 64]),
       scale=st.integers(-8, 8))  # fmt: skip
def test_quantized_linear(weights, threshold, block, d_in, d_out, scale):
    """Correct output or a ValueError/TypeError; never NaN from finite input. (Found here: int8
    layers gave all-NaN beyond the float16 maximum; now refused, see test_int8_refuses_fp16_overflow.)"""
    torch.manual_seed(0)
    lin = nn.Linear(d_in, d_out)
    with torch.no_grad():
        lin.weight.mul_(10.0**scale)
    try:
        mod = quantized_linear(lin, weights, "cpu", threshold=threshold, block_size=block)
    except (ValueError, TypeError):
        return
    with torch.inference_mode():
        y = mod(torch.randn(3, d_in))
    assert y.shape == (3, d_out) and torch.isfinite(y.float()).all(), f"{weights}: non-finite output"


def test_int8_refuses_fp16_overflow():
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight.mul_(1e6)
    with pytest.raises(ValueError, match="float16"):
        quantized_linear(lin, "int8", "cpu", threshold=0.0)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quantized_linear(lin, "nf4", "cpu")
