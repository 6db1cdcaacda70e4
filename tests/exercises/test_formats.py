"""Plausible wrong answers to the lesson 04-05 exercises fail with a message that points at the mistake."""

import numpy as np

import qlab.exercises as ex


def _e4m3(c, nan=True, subnormal=True):
    s = -1.0 if c & 0x80 else 1.0
    e, m = (c >> 3) & 15, c & 7
    if nan and e == 15 and m == 7:
        return float("nan")
    if subnormal and e == 0:
        return s * 2.0**-6 * (m / 8)
    return s * 2.0 ** (e - 7) * (1 + m / 8)


def test_decode_e4m3():
    assert ex.check("decode_e4m3", _e4m3)
    r = ex.check("decode_e4m3", lambda c: _e4m3(c, subnormal=False))
    assert not r and "case 1 (0)" in r.message and "subnormal" in r.hint
    r = ex.check("decode_e4m3", lambda c: _e4m3(c, nan=False))
    assert not r and "expected NaN" in r.message
    r = ex.check("decode_e4m3", lambda c: _e4m3(c) if c < 0x80 else abs(_e4m3(c)))  # sign ignored
    assert not r and "case 9 (184): got 1.0, expected -1.0" in r.message  # -0 == +0 passes


def test_block_bits_per_weight():
    good = lambda bs, parts, row_length=None, per_row_bytes=0: 8 * sum(parts) / bs + (  # noqa: E731
        8 * per_row_bytes / row_length if row_length else 0)
    assert ex.check("block_bits_per_weight", good)
    r = ex.check("block_bits_per_weight", lambda bs, parts, row_length=None, per_row_bytes=0: sum(parts) / bs)
    assert not r and "expected 4.5" in r.message  # bytes, not bits
    r = ex.check("block_bits_per_weight", lambda bs, parts, row_length=None, per_row_bytes=0: 8 * sum(parts) / bs)
    assert not r and "per_row_bytes=4" in r.message


def _q4(raw, order="halves"):
    d = raw[:2].view(np.float16)[0].astype(np.float32)
    qs = raw[2:]
    codes = np.concatenate([qs & 15, qs >> 4]) if order == "halves" else np.stack([qs & 15, qs >> 4], 1).ravel()
    return (codes.astype(np.float32) - 8) * d


def test_decode_q4_0_block():
    assert ex.check("decode_q4_0_block", _q4)
    r = ex.check("decode_q4_0_block", lambda raw: _q4(raw, "interleaved"))
    assert not r and "values differ" in r.message and "np.float64" not in r.message
    r = ex.check("decode_q4_0_block", lambda raw: _q4(raw) + 8 * raw[:2].view(np.float16)[0].astype(np.float32))
    assert not r  # forgot the -8 offset
    r = ex.check("decode_q4_0_block", lambda raw: _q4(raw)[:16])
    assert not r and "shape" in r.message
