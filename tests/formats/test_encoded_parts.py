"""Tampered or hand-made ``Encoded`` objects are validated against the format's layout in one
place (``Format.check_parts``, run by every ``decode``) -- issue 11, item 5. Real encodings of
every registered format, then changed the ways the adversarial sweep found."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import qlab.formats as F

X = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
ALL = F.names()


def _enc(name: str) -> F.Encoded:
    fmt = F.get(name)
    x = np.abs(X) + np.float32(0.1) if name == "e8m0" else X
    opts = {"imatrix": np.ones(256, np.float32)} if getattr(fmt, "requires_imatrix", False) else {}
    return fmt.encode(x, **opts)


@pytest.mark.parametrize("name", ALL)
def test_shape_smaller_than_the_parts(name: str) -> None:
    enc = dataclasses.replace(_enc(name), shape=(2, 256))  # was (4, 256): would return a slice
    with pytest.raises(ValueError, match=rf"{name}: this Encoded does not match the format's layout for shape \(2, 256\)"):
        enc.decode()


@pytest.mark.parametrize("name", ALL)
def test_truncated_part(name: str) -> None:
    enc = _enc(name)
    k, v = max(enc.parts.items(), key=lambda kv: kv[1].size)
    enc.parts[k] = v.reshape(-1)[:-1].copy()
    with pytest.raises(ValueError, match=rf"{name}: .*part '{k}' is "):
        enc.decode()


@pytest.mark.parametrize("name", ALL)
def test_missing_and_wrong_dtype(name: str) -> None:
    enc = _enc(name)
    k = next(iter(enc.parts))
    wrong = enc.parts[k].astype(np.float64 if enc.parts[k].dtype != np.float64 else np.float32)
    with pytest.raises(ValueError, match=rf"part '{k}' is "):
        dataclasses.replace(enc, parts={**enc.parts, k: wrong}).decode()
    with pytest.raises(ValueError, match=rf"missing part '{k}'"):
        dataclasses.replace(enc, parts={n: p for n, p in enc.parts.items() if n != k}).decode()


def test_int1_without_zero_point() -> None:
    enc = F.get("int1").encode(X)
    del enc.parts["zero_point"]
    with pytest.raises(ValueError, match=r"int1: .*missing part 'zero_point'"):
        enc.decode()


def test_fp6_truncated_codes_not_padded() -> None:
    for name in ("fp6_e2m3", "mxfp6_e2m3"):
        enc = F.get(name).encode(X)
        enc.parts["codes"] = enc.parts["codes"][:-3]
        with pytest.raises(ValueError, match=rf"{name}: .*part 'codes'"):
            enc.decode()


def test_changed_options_are_checked() -> None:
    enc = F.get("int4").encode(X, granularity="group", group_size=64)
    enc.options["granularity"] = "tensor"  # one scale expected, 16 stored
    with pytest.raises(ValueError, match=r"int4: .*part 'scale' is float32\[16\], expected float32\[1\]"):
        enc.decode()


@pytest.mark.parametrize("name", ALL)
def test_intact_and_rebuilt_encodings_still_decode(name: str) -> None:
    enc = _enc(name)
    want = enc.decode()
    rebuilt = F.Encoded(enc.format, tuple(enc.shape), {k: v.copy() for k, v in enc.parts.items()}, enc.nbytes,
                        dict(enc.options))  # fmt: skip
    np.testing.assert_array_equal(rebuilt.decode(), want)


# -- issue 11: from_bytes on a format without a byte layout ---------------------------------------------
@pytest.mark.parametrize("name", [n for n in ALL if type(F.get(n)).from_bytes is F.Format.from_bytes])
def test_from_bytes_only_for_gguf_formats(name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name} has no byte layout to read; from_bytes\(\) is for formats with a GGML type \(mxfp4, q4_0, "):
        F.get(name).from_bytes(b"\\0" * 64, (1, 32))
    with pytest.raises(TypeError, match=r"to_bytes\(\) is for formats with a GGML type \(mxfp4, q4_0, "):
        _enc(name).to_bytes()
