"""bitsandbytes' real modules against qlab's simulation, on CPU and (when a GPU is visible) CUDA.

* ``Linear4bit`` nf4/fp4, with and without double quantization: the dequantized weight is
  ``qlab.roundtrip(w, "nf4" | "fp4_bnb", block_size=64, double_quant=...)`` bit for bit, and the
  output equals the float ``Linear`` with that weight;
* ``Linear8bitLt`` (threshold 6.0 and 0): on a real MiniLM layer fed real activations that do have
  outlier features, the output equals qlab's LLM.int8() decomposition up to near-tie codes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from qlab.backends import bitsandbytes as bnbb
from qlab.backends.compare import batches, float_model, run_batch
from qlab.formats import roundtrip

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="CUDA not available (torch.cuda.is_available() is False): the bitsandbytes CUDA path runs on a GPU machine",
    )),
]


_IO: dict[str, torch.Tensor] = {}
QUERY = "encoder.layer.1.attention.self.query"


def _layer_io(m: Any, path: str, n: int = 8) -> tuple[torch.nn.Linear, torch.Tensor]:
    """A real MiniLM Linear and the real activations entering it for ``n`` sentences (cached)."""
    lin = m.model.get_submodule(path)
    if path not in _IO:
        h = lin.register_forward_hook(lambda _m, i, _o: _IO.update({path: i[0].detach().clone()}))
        with torch.inference_mode():
            run_batch(m.model, batches(m, n, n, "eval")[0])
        h.remove()
    return lin, _IO[path]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", ["nf4", "fp4"])
@pytest.mark.parametrize("double_quant", [True, False])
@pytest.mark.parametrize("cpu_kernel", ["auto", "float32"])
def test_linear4bit_is_qlab_codebook_format(minilm: Any, fmt: str, double_quant: bool, device: str,
                                            cpu_kernel: str) -> None:
    """On the CPU, ``auto`` is bitsandbytes' own choice (the bfloat16 kernel on AVX512-BF16 CPUs,
    else float32) and ``float32`` forces the float32 path: both against the simulation of it."""
    from bitsandbytes.functional import dequantize_4bit

    lin, x = _layer_io(minilm, QUERY)
    q = bnbb.quantized_linear(lin, fmt, device, compress_statistics=double_quant, cpu_kernel=cpu_kernel)
    assert type(q).__name__ == "Linear4bit" and q.weight.dtype == torch.uint8
    w_hat = roundtrip(lin.weight.detach().numpy(), "nf4" if fmt == "nf4" else "fp4_bnb", block_size=64,
                      double_quant=double_quant)
    stored = dequantize_4bit(q.weight.data, q.weight.quant_state).float().cpu().numpy()
    if device == "cpu":
        np.testing.assert_array_equal(stored, w_hat)  # qlab's codec is bit-exact with bnb's CPU kernels
    else:  # the CUDA quantizer picks codes by a search tree: equal except at code midpoints
        assert (stored != w_hat).mean() < 1e-4
    bf16 = device == "cpu" and cpu_kernel == "auto" and bnbb.cpu_bf16_kernel()
    with torch.inference_mode():
        y = q(x.to(device)).cpu()
    assert_linear4bit_output(y, x, lin, fmt, double_quant, bf16)
    # the whole-model simulation (which detects the CPU's kernel as bitsandbytes does) computes it too
    sim = bnbb.simulate(minilm, fmt, compress_statistics=double_quant, cpu_kernel=cpu_kernel).model
    sim = sim.get_submodule(QUERY)
    with torch.inference_mode():
        assert_linear4bit_output(sim(x), x, lin, fmt, double_quant, bf16)


def assert_linear4bit_output(y: torch.Tensor, x: torch.Tensor, lin: torch.nn.Linear, fmt: str, double_quant: bool,
                             bf16: bool) -> None:
    """``Linear4bit``'s output ``y`` against qlab's simulation of the kernel that computed it."""
    w_sim = torch.from_numpy(bnbb.four_bit_weight(lin.weight.detach().numpy(), fmt, 64, double_quant, bf16=bf16))
    with torch.inference_mode():
        if not bf16:
            # float32 compute on the same weights: summation order only
            y_sim = torch.nn.functional.linear(x, w_sim, lin.bias)
            assert (y - y_sim).abs().max().item() <= 1e-5 * y.abs().max().item() + 1e-6
            return
        # AVX512-BF16 kernel: the same bfloat16 inputs and weights, float32 sums rounded to
        # bfloat16, + bias in float32. Only the summation order differs, so each float32 sum is
        # within gamma * S of the exact one (Higham's bound: gamma = K * 2**-24 for K terms,
        # S = sum |x_i * w_i|) and after rounding to bfloat16 (a step of 2**-7 relative: 8
        # significand bits) the two agree except near a rounding boundary, where they are one step
        # apart. Tolerance: 2 gamma S + one step (+ the float32 rounding of adding the bias).
        xb = x.to(torch.bfloat16).float()
        acc = torch.nn.functional.linear(xb, w_sim)
        y_sim = acc.to(torch.bfloat16).float() + lin.bias.detach()
        gamma_s = 2 * x.shape[-1] * 2.0**-24 * torch.nn.functional.linear(xb.abs(), w_sim.abs())
        step = torch.exp2(torch.floor(torch.log2((acc.abs() + gamma_s).clamp_min(2**-126))) - 7)
        diff = y - y_sim
        assert (diff.abs() <= gamma_s + step + 2.0**-23 * y.abs()).all(), (diff.abs() / step).max()
        assert (diff != 0).float().mean().item() < 0.05


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threshold", [6.0, 0.0])
def test_linear8bitlt_matches_llm_int8_simulation(minilm: Any, threshold: float, device: str) -> None:
    lin, x = _layer_io(minilm, "encoder.layer.2.output.dense")  # input: the GELU output, 1536 features
    if threshold:
        assert len(bnbb.outlier_columns(x, threshold)) > 0  # the decomposition is really exercised
    q = bnbb.quantized_linear(lin, "int8", device, threshold=threshold)
    assert type(q).__name__ == "Linear8bitLt" and q.weight.dtype == torch.int8
    with torch.inference_mode():
        y = q(x.to(device)).cpu()
        y_sim = bnbb.llm_int8_linear(x, lin.weight, lin.bias, threshold)
        y_float = lin(x)
    # tolerance: where x * (127 / max) lies within float32 rounding of a half, bnb and qlab's
    # rint(x * (1 / (max / 127))) can pick neighbouring codes; one code moves a token's outputs by
    # (row max / 127) * max|w|. Such tokens are rare: everything else agrees to ~1e-5.
    a = x.reshape(-1, x.shape[-1]).half().float()
    if threshold:
        a = a.masked_fill(a.abs() >= threshold, 0)
    one_code = (a.abs().max(1).values / 127).max().item() * lin.weight.abs().max().item()
    err = (y - y_sim).abs().reshape(-1, y.shape[-1]).max(1).values
    assert err.max().item() <= 2 * one_code
    assert (err > 1e-4 * y.abs().max()).float().mean().item() <= 0.02
    assert err.median().item() < (y - y_float).abs().max().item() / 100


@pytest.mark.parametrize("fmt", ["nf4", "int8"])
def test_model_matches_simulation(digits: Any, fmt: str) -> None:
    q = bnbb.quantize(digits, fmt)
    kinds = ["Linear4bit", "Linear"] if fmt == "nf4" else ["Linear8bitLt"] * 2  # fc2: 32 inputs < one block
    assert [type(mod).__name__ for mod in (q.model.fc1, q.model.fc2)] == kinds
    assert q.info["float_layers"] == ([] if fmt == "int8" else ["fc2"])
    x = batches(digits, 256, 256, "eval")[0]
    with torch.inference_mode():
        y, y_sim, y_float = q.model(x), bnbb.simulate(digits, fmt).model(x), digits.model(x)
    if fmt == "nf4":  # identical weights, float32 compute
        assert (y - y_sim).abs().max().item() < 1e-4 * y.abs().max().item()
    else:  # per-token int8 codes may differ at near-ties (see the layer test): rare and small
        assert (y - y_sim).abs().max().item() < (y - y_float).abs().max().item()
        assert ((y - y_sim).abs().max(1).values > 1e-4 * y.abs().max()).float().mean() < 0.05
    assert (y.argmax(1) == y_sim.argmax(1)).float().mean() > 0.99
    assert q.evaluate()["accuracy"] > digits.evaluate()["accuracy"] - 0.02


def test_nf4_bytes(minilm: Any) -> None:
    q = bnbb.quantize(minilm, "nf4", skip=("attention", "pooler"))  # the 12 feed-forward Linear layers
    assert len(q.info["layers"]) == 12
    # each weight goes from 4 bytes to 4 bits + 1 byte absmax per 64 (+ fp32 scale per 256 blocks)
    lin_params = sum(minilm.model.get_submodule(n).weight.numel() for n in q.info["layers"])
    saved = float_model(minilm).weight_bytes - q.weight_bytes
    assert saved == pytest.approx(lin_params * (4 - 0.5 - 1 / 64), rel=0.01)
    assert q.disk_bytes < float_model(minilm).disk_bytes - 0.95 * saved


def test_rows_must_hold_whole_blocks(digits: Any) -> None:
    """bnb 0.50's CPU kernel decodes a 4-bit weight whose rows are shorter than a block with the
    first block's scale in every row (the reason quantize() keeps such layers float)."""
    from bitsandbytes.functional import dequantize_4bit, quantize_4bit

    w = digits.model.fc2.weight.detach()  # (10, 32)
    packed, state = quantize_4bit(w.contiguous(), blocksize=64, quant_type="nf4", compress_statistics=False)
    stored = dequantize_4bit(packed, state).float().numpy()
    flat = roundtrip(w.numpy().reshape(-1, 64), "nf4", block_size=64).reshape(w.shape)  # bnb's own blocks
    assert np.array_equal(stored[:2], flat[:2]) and not np.array_equal(stored, flat)
    with pytest.raises(ValueError, match="in_features=32"):
        bnbb.quantized_linear(digits.model.fc2, "nf4")


def test_bad_input(minilm: Any, digits: Any) -> None:
    with pytest.raises(ValueError, match=r"bitsandbytes.*'int4'.*int8, nf4, fp4"):
        bnbb.quantize(digits, "int4")
    with pytest.raises(ValueError, match="threshold"):
        bnbb.quantize(digits, "int8", threshold=-1)
    with pytest.raises(ValueError, match="device"):
        bnbb.quantize(digits, "nf4", device="mps")
    odd = torch.nn.Linear(64, 10)  # 10 outputs: not a whole tile of the bfloat16 CPU kernel
    if bnbb.cpu_bf16_kernel():
        with pytest.raises(ValueError, match="out_features=10 .* cpu_kernel='float32'"):
            bnbb.quantized_linear(odd, "nf4")
    with torch.inference_mode():  # the float32 kernel holds it on every CPU
        assert bnbb.quantized_linear(odd, "nf4", cpu_kernel="float32")(torch.randn(3, 64)).shape == (3, 10)
    for bad in ("bf16", "", "FLOAT32"):
        with pytest.raises(ValueError, match=rf"cpu_kernel must be one of \('auto', 'float32'\), got '{bad}'"):
            bnbb.quantize(digits, "nf4", cpu_kernel=bad)
        with pytest.raises(ValueError, match="cpu_kernel"):
            bnbb.simulate(digits, "nf4", cpu_kernel=bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"cuda.*is_available\(\) is False"):
            bnbb.quantize(digits, "nf4", device="cuda")
    empty = type(digits)("empty", torch.nn.Sequential(torch.nn.ReLU()), None, "image-classifier", None)
    with pytest.raises(ValueError, match="no nn.Linear"):
        bnbb.quantize(empty, "nf4")
    assert bnbb.quantize(digits, "fp4_bnb").evaluate()["accuracy"] > 0.9  # qlab's name for bnb's fp4


# -- issue 11, item 14 and the device strings ---------------------------------------------------------
@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -1, True, "6"])
def test_threshold_must_be_finite_and_non_negative(digits: Any, threshold: Any) -> None:
    with pytest.raises(ValueError, match=rf"bitsandbytes: threshold must be a finite number >= 0 .*got {threshold!r}"):
        bnbb.quantize(digits, "int8", threshold=threshold)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        bnbb.quantized_linear(digits.model.fc1, "int8", threshold=threshold)


@pytest.mark.parametrize("device", ["gpu", "", "CPU", None])
def test_device_strings_are_clear_errors(digits: Any, device: Any) -> None:
    with pytest.raises(ValueError, match=rf"bitsandbytes: device must be one of \('cpu', 'cuda'\) .*got {device!r}"):
        bnbb.quantize(digits, "nf4", device=device)
    with pytest.raises(ValueError, match="device must be one of"):
        bnbb.quantized_linear(digits.model.fc1, "int8", device=device)
