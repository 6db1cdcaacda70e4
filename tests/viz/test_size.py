"""The size calculator's numbers against hand arithmetic and encoded bytes."""

import numpy as np
import pytest

import qlab
from qlab.viz.size import format_bits, readout, size_state


def test_size_state_hand_arithmetic():
    s = size_state(1_000_000_000, "fp16", 100)
    assert s["bits_per_weight"] == 16 and s["gb"] == pytest.approx(2.0) and s["vs_fp32"] == 2
    assert s["seconds"] == pytest.approx(0.02) and s["tokens_per_s"] == pytest.approx(50)
    assert size_state(10, "fp32", 1)["bytes"] == 40
    assert "GB" in readout(s) and "tokens/s" in readout(s)


def test_format_bits_match_encoded_bytes():
    x = np.random.default_rng(1).normal(size=(64, 576)).astype(np.float32)
    for fmt in ("q4_0", "q8_0", "int8", "nf4", "fp8_e4m3"):
        enc = qlab.formats.get(fmt).encode(x)
        # per-tensor parts are spread over the whole tensor by the encoder only
        per_tensor = sum(n for _, n in qlab.formats.get(fmt).layout().per_tensor)
        assert format_bits(fmt, row_length=576) == pytest.approx(8 * (enc.nbytes - per_tensor) / x.size)
