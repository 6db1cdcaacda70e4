"""Model-size arithmetic against independent counts: state dicts, encoded bytes, hand formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qlab
from qlab.analysis.size import (
    decode_table,
    effective_bits,
    group_bits,
    matmul_latency,
    measure_bandwidth,
    model_rows,
    parameter_counts,
    size_table,
    stream_seconds,
)


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


def test_parameter_counts_digits_matches_state_dict():
    m = qlab.models.load("digits-cnn", progress=False)
    c = parameter_counts(m)
    sd = m.model.state_dict()
    assert c["total"] == sum(v.numel() for v in sd.values() if v.is_floating_point())
    assert c["weights"] == sum(v.numel() for k, v in sd.items() if k.endswith("weight") and v.ndim >= 2)
    assert c["other"] == c["total"] - c["weights"] and c["tied"] == []
    assert c["float32_bytes"] == 4 * c["total"]


def test_tied_weights_count_once():
    c = parameter_counts(Tied())
    assert c["total"] == 40 + 8  # embedding once + LayerNorm weight and bias
    assert sum(v.numel() for v in Tied().state_dict().values()) == 88  # the state dict lists it twice
    assert c["weights"] == 40 and c["other"] == 8 and c["tied"] == ["head"]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("int8", {}), ("int8", {"granularity": "tensor"}), ("int4", {"granularity": "group", "group_size": 64}),
     ("int4", {"symmetric": False, "granularity": "group", "group_size": 32}), ("q4_0", {}), ("q8_0", {}),
     ("q4_k", {}), ("nf4", {}), ("nvfp4", {}), ("mxfp4", {}), ("fp8_e4m3", {"granularity": "channel"})],
)
def test_effective_bits_equals_encoded_bytes(fmt, options):
    x = np.random.default_rng(0).normal(size=(12, 512)).astype(np.float32)
    enc = qlab.formats.get(fmt).encode(x, **options)
    assert effective_bits(fmt, row_length=512, n_rows=12, **options) == pytest.approx(8 * enc.nbytes / x.size)


def test_group_bits_matches_layouts():
    assert group_bits(4, 16, 32) == qlab.formats.describe("q4_0")["bits_per_weight"] == 4.5
    assert group_bits(8, 16, 32) == qlab.formats.describe("q8_0")["bits_per_weight"]
    assert group_bits(4, 16, 32, zero_bits=16) == qlab.formats.describe("q4_1")["bits_per_weight"]
    for g in (32, 64, 128):
        assert group_bits(4, 32, g) == qlab.formats.describe("int4", granularity="group", group_size=g)["bits_per_weight"]
    with pytest.raises(ValueError):
        group_bits(4, 16, 0)


def test_size_and_stream_arithmetic():
    rows = size_table(176_000_000_000, {"fp16": 16, "int4": 4.5}, other_params=0)
    assert rows[0]["gb"] == pytest.approx(352.0) and rows[1]["bytes"] == pytest.approx(176e9 * 4.5 / 8)
    assert rows[0]["vs_fp32"] == pytest.approx(2.0)
    r = size_table(100, {"int8": 8}, other_params=10)[0]
    assert r["bytes"] == 100 + 40 and r["vs_fp32"] == pytest.approx(440 / 140)
    assert stream_seconds(2e9, 100) == pytest.approx(0.02)
    t = decode_table({"a": 1e9}, {"slow": 10, "fast": 1000})
    assert [x["tokens_per_s"] for x in t] == pytest.approx([10, 1000])
    with pytest.raises(ValueError):
        stream_seconds(1, 0)


def test_model_rows_keep_other_params_in_fp32():
    m = qlab.models.load("digits-cnn", progress=False)
    c = parameter_counts(m)
    rows = model_rows([m], {"fp32": 32, "int8": 8})
    assert rows[0]["bytes"] == 4 * c["total"]
    assert rows[1]["bytes"] == c["weights"] + 4 * c["other"] and rows[1]["model"] == "digits-cnn"


def test_timings_are_positive():
    t = matmul_latency(tokens=4, d_in=64, d_out=64, repeat=2)
    assert set(t.rounds) == {"fp32", "int8"} and all(v > 0 for r in t.rounds.values() for v in r)
    lo, mid, hi = t.ratio("int8", "fp32")
    per_round = [f / i for f, i in zip(t.rounds["fp32"], t.rounds["int8"], strict=True)]
    assert lo <= mid <= hi and mid == pytest.approx(sum(per_round) / 2)  # the median of two rounds
    assert measure_bandwidth(mbytes=4, repeat=2) > 0
