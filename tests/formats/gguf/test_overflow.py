"""GGML input checks (issue 11). Item 1: finite input whose block scale does not fit fp16 raises
instead of decoding to NaN/Inf; ``overflow="inf"`` keeps llama.cpp's bytes (an infinite fp16
scale). Item 4: ``from_bytes`` refuses shapes that are not non-negative integers."""

from __future__ import annotations

import numpy as np
import pytest

import qlab.formats as F

GGML = [n for n in F.names() if F.get(n).family == "gguf"]


def _huge() -> np.ndarray:
    """Two rows of whole super-blocks: row 0 ordinary, row 1 with max |x| = 1e30 (every GGML
    scale overflows fp16 there; float32 handles it easily)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    x[1] *= np.float32(1e30)
    return x


@pytest.mark.parametrize("t", GGML)
def test_fp16_scale_overflow_raises(t: str) -> None:
    fmt = F.get(t)
    x = _huge()
    opts = {"imatrix": np.ones(256, np.float32)} if getattr(fmt, "requires_imatrix", False) else {}
    first_bad = 256 // fmt.block_size  # the first block of row 1
    with pytest.raises(ValueError, match=rf"{t}: block {first_bad} .*fp16 limit 65504"):
        fmt.encode(x, **opts)
    raw = fmt.encode(x, overflow="inf", **opts).parts["blocks"]  # llama.cpp's bytes, on request
    with np.errstate(all="ignore"):
        y = fmt.dequantize_blocks(raw)[first_bad:]
    assert not np.isfinite(y).all() or not y.any()  # NaN/Inf, or an all-zero block (scale 0)


def test_issue_example_q4_1() -> None:
    x = np.linspace(-7e4, 7e4, 32, dtype=np.float32)[None]
    with pytest.raises(ValueError, match=r"q4_1: block 0 .*max \|x\| = 7e\+04.*fp16 limit 65504"):
        F.roundtrip(x, "q4_1")
    assert np.isfinite(F.roundtrip(x / 2, "q4_1")).all()  # just below the limit: finite


def test_overflow_option_validated() -> None:
    with pytest.raises(ValueError, match=r"q4_0: overflow must be one of \('raise', 'inf'\), got 'clip'"):
        F.get("q4_0").encode(np.ones((1, 32), np.float32), overflow="clip")

# -- issue 11, item 4: from_bytes refuses shapes that are not non-negative integers ----------------
@pytest.mark.parametrize("shape", [(4.9, 256.0), (-1, 32), (2, -32), (np.float32(1), 32), (True, 32), "32", None])
def test_from_bytes_bad_shape(shape) -> None:
    fmt = F.get("q4_0")
    raw = fmt.encode(np.ones((4, 256), np.float32)).to_bytes()
    with pytest.raises(ValueError, match=r"q4_0: shape must be a tuple of non-negative integers .*got"):
        fmt.from_bytes(raw, shape)


def test_from_bytes_integer_shapes_still_work() -> None:
    fmt = F.get("q4_0")
    x = np.ones((4, 256), np.float32)
    raw = fmt.encode(x).to_bytes()
    for shape in [(4, 256), [4, 256], (np.int64(4), np.int32(256))]:
        assert np.array_equal(fmt.decode(fmt.from_bytes(raw, shape)), x)
