import numpy as np
import pytest

import qlab
from qlab.analysis import compare_formats, error_stats, formats_with_bits, sqnr_db


def test_sqnr_definition():
    x = np.ones(1000, np.float32)
    y = x + 0.1  # noise power 0.01 against signal power 1 -> 20 dB
    assert sqnr_db(x, y) == pytest.approx(20.0, abs=1e-4)
    assert sqnr_db(x, x) == float("inf")
    assert sqnr_db(np.zeros(3), np.ones(3)) == float("-inf")


def test_six_db_per_bit_on_a_uniform_signal():
    # the textbook rule: each extra bit halves the step and adds 20 log10(2) = 6.02 dB. With the
    # restricted symmetric grid the step shrinks by qmax(b+1)/qmax(b) = (2^b - 1)/(2^(b-1) - 1),
    # a bit more than 2 at low bits, so the measured slope approaches 6.02 dB from above.
    x = np.random.default_rng(0).uniform(-1, 1, (64, 1024)).astype(np.float32)
    bits = np.arange(3, 9)
    s = [sqnr_db(x, qlab.roundtrip(x, f"int{b}", granularity="tensor")) for b in bits]
    expected = 20 * np.log10((2.0 ** (bits[1:] - 1) - 1) / (2.0 ** (bits[:-1] - 1) - 1))
    np.testing.assert_allclose(np.diff(s), expected, atol=0.15)
    assert abs(np.diff(s)[-1] - 6.02) < 0.1


def test_error_stats_fields():
    x = np.array([0.0, 1.0, -2.0], np.float32)
    y = np.array([0.0, 1.5, -2.0], np.float32)
    st = error_stats(x, y)
    assert st["max_abs_err"] == 0.5 and st["mse"] == pytest.approx(0.25 / 3)
    assert error_stats(x[:0], y[:0])["mse"] == 0.0


def test_formats_with_bits_respects_width_and_blocks():
    four = formats_with_bits(4)
    assert {"int4", "q4_0", "nf4"} <= set(four)
    assert "int8" not in four and "q8_0" in formats_with_bits(8)
    # every listed format encodes a signed tensor with default options (no e8m0, no imatrix-only IQ type)
    x = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
    for b in range(1, 9):
        for name in formats_with_bits(b, row_length=256):
            assert np.isfinite(qlab.roundtrip(x, name)).all(), name
    assert "e8m0" not in formats_with_bits(8) and "iq2_xxs" not in formats_with_bits(2)
    assert "iq2_s" in formats_with_bits(2) and "iq3_s" in formats_with_bits(3)
    for name in four:
        assert 4 <= qlab.formats.get(name).bits_per_weight < 5
    # a 96-wide row excludes the 256-value K-quant super-blocks
    fits = formats_with_bits(4, row_length=96)
    assert "q4_0" in fits and "int4" in fits and "q4_k" not in fits and "nf4" not in fits
    assert "int4" in formats_with_bits(4, row_length=7)  # one scale per row: any length


def test_compare_formats_rows_match_direct_encoding():
    x = np.random.default_rng(1).standard_normal((8, 256)).astype(np.float32)
    rows = compare_formats(x, ["int8", "q8_0", "int4"], granularity="tensor")
    assert [r["format"] for r in rows] == ["int8", "q8_0", "int4"]
    direct = qlab.formats.get("int8").encode(x, granularity="tensor")
    assert rows[0]["nbytes"] == direct.nbytes == 8 * 256 + 4
    assert rows[0]["sqnr_db"] > rows[2]["sqnr_db"]
    assert rows[1]["nbytes"] == 8 * 256 // 32 * 34
