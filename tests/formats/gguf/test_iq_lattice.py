"""The IQ lattice types (IQ1_S ... IQ3_S): byte-exact with llama.cpp, with and without imatrix.

References: llama.cpp's own bytes (``tests/data/imatrix/ggml_imatrix.npz``, written by
``ggml_quantize_chunk`` with ``quant_weights``; ``tests/data/ggml/iq3_s.npz`` without), gguf-py's
``dequantize`` and grid tables, and llama.cpp's library itself on adversarial inputs (through
ctypes, in a child process so that a native abort fails a test instead of killing pytest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf import quants as gq

import qlab.formats as F
import qlab.formats.gguf  # noqa: F401  (registers the IQ formats)
from qlab.formats.gguf import iq_grids

from ._oracle import adversarial_inputs, llama_cpp_cases

DATA = Path(__file__).resolve().parents[2] / "data"
IMAT = dict(np.load(DATA / "imatrix" / "ggml_imatrix.npz"))
TYPES = ["iq3_s", "iq3_xxs", "iq2_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m"]
NEEDS_IMATRIX = {"iq2_xxs", "iq2_xs", "iq1_s"}
BPW = {
    "iq2_xxs": 2.0625,
    "iq2_xs": 2.3125,
    "iq2_s": 2.5625,
    "iq3_xxs": 3.0625,
    "iq3_s": 3.4375,
    "iq1_s": 1.5625,
    "iq1_m": 1.75,
}
ORACLE_KEYS = sorted(k for k in IMAT if k.split("/")[0] in TYPES)


def gguf_decode(t: str, raw: bytes) -> np.ndarray:
    return gq.dequantize(np.frombuffer(raw, np.uint8), GGMLQuantizationType[t.upper()]).ravel()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(
        np.asarray(a, np.float32).ravel().view(np.uint32), np.asarray(b, np.float32).ravel().view(np.uint32)
    )


# -- tables ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", TYPES)
def test_decoder_grid_equals_gguf_py(t: str) -> None:
    """The grids generated from llama.cpp's ``kgrid_*`` lists equal gguf-py's (ggml-common.h's)."""
    cls = gq._type_traits[GGMLQuantizationType[t.upper()]]
    cls.init_grid()
    ours = iq_grids.decoder_grid(t)
    assert np.array_equal(cls.grid.reshape(ours.shape), ours)


def test_ksigns_equals_gguf_py() -> None:
    assert np.array_equal(np.frombuffer(gq.IQ2_XXS.ksigns, np.uint8), iq_grids.KSIGNS)


@pytest.mark.parametrize("t", ["iq3_xxs", "iq3_s", "iq2_xxs", "iq2_s"])
def test_neighbour_map(t: str) -> None:
    """Grid points map to themselves; sampled off-grid vectors list exactly the grid points at
    the ``nwant`` smallest squared distances, by distance then index (brute force)."""
    g = iq_grids.quantizer_grid(t)
    _, bits, dim, nwant, size = iq_grids._SPECS[t]
    npts = g.grid.shape[0]
    lv = (g.grid.astype(np.int64) - 1) // 2
    u_grid = (lv << (bits * np.arange(dim))).sum(1)
    assert np.array_equal(g.kmap[u_grid], np.arange(npts))
    assert (g.kmap >= 0).sum() == npts
    rng = np.random.default_rng(0)
    for u in rng.choice(np.nonzero(g.kmap < 0)[0], 50, replace=False):
        pos = 2 * ((u >> (bits * np.arange(dim))) & ((1 << bits) - 1)) + 1
        d2 = ((g.grid.astype(np.int64) - pos) ** 2).sum(1)
        keep = np.isin(d2, np.unique(d2)[:nwant])
        want = np.lexsort((np.arange(npts), d2))
        want = want[keep[want]]
        off = -g.kmap[u] - 1
        got = g.neighbours[off + 1 : off + 1 + g.neighbours[off]]
        assert np.array_equal(got, want)


# -- layout ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", TYPES)
def test_describe(t: str) -> None:
    d = F.describe(t)
    assert d["bits_per_weight"] == BPW[t] and d["block_size"] == 256 and d["family"] == "gguf"
    assert d["layout"].endswith(f"= {d['bytes_per_block']} bytes / 256 values") and "+" in d["layout"]
    assert F.get(t).type_size * 8 / 256 == BPW[t]
    assert gq.GGML_QUANT_SIZES[GGMLQuantizationType[t.upper()]] == (256, F.get(t).type_size)
    assert F.get(t).ggml_type == GGMLQuantizationType[t.upper()].value


# -- llama.cpp's bytes ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", ORACLE_KEYS)
def test_oracle_bytes(key: str) -> None:
    """``encode(x, imatrix=w)`` equals what ``ggml_quantize_chunk`` wrote; decoding those bytes
    equals gguf-py's ``dequantize``."""
    t, m, im = key.split("/")
    x = IMAT[f"x/{m}"]
    w = None if im == "none" else IMAT[f"imatrix/{im}"]
    fmt = F.get(t)
    ref = IMAT[key].tobytes()
    assert fmt.encode(x, imatrix=w).to_bytes() == ref
    assert same_bits(fmt.decode(fmt.from_bytes(ref, x.shape)), gguf_decode(t, ref))


def test_oracle_covers_every_type() -> None:
    assert {k.split("/")[0] for k in ORACLE_KEYS} == set(TYPES)
    assert len(ORACLE_KEYS) == 54


@pytest.mark.parametrize("name", sorted(np.load(DATA / "ggml" / "inputs.npz").files))
def test_iq3_s_without_imatrix(name: str) -> None:
    """llama.cpp's IQ3_S bytes of the model-shaped matrices (``llama_model_quantize``, no imatrix)."""
    x = np.load(DATA / "ggml" / "inputs.npz")[name]
    ref = np.load(DATA / "ggml" / "iq3_s.npz")[name].tobytes()
    assert F.get("iq3_s").encode(x).to_bytes() == ref


@pytest.mark.parametrize("t", TYPES)
def test_shapes_and_roundtrip(t: str) -> None:
    """The imatrix indexes columns: a 3-D tensor encodes like its rows; decode has the shape."""
    x = IMAT["x/student3"]
    w = IMAT["imatrix/lognormal"]
    fmt = F.get(t)
    flat = fmt.encode(x, imatrix=w)
    cube = fmt.encode(x.reshape(2, 8, 512), imatrix=w)
    assert cube.to_bytes() == flat.to_bytes() and cube.nbytes == x.size * BPW[t] / 8
    y = fmt.decode(cube)
    assert y.shape == (2, 8, 512) and y.dtype == np.float32
    assert np.abs(y.reshape(x.shape) - x).mean() < np.abs(x).mean()


# -- options --------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", sorted(NEEDS_IMATRIX))
def test_requires_imatrix(t: str) -> None:
    with pytest.raises(ValueError, match=f"{t}: an importance matrix is required"):
        F.get(t).encode(IMAT["x/normal"])


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.ones(512, np.float64), "1-D float32"),
        (np.ones((1, 512), np.float32), "1-D float32"),
        ([1.0] * 512, "1-D float32"),
        (np.ones(256, np.float32), "imatrix has 256 values, but rows have 512"),
        (np.r_[np.ones(511), 0].astype(np.float32), "finite and > 0.*column 511"),
        (np.r_[-np.ones(1), np.ones(511)].astype(np.float32), "finite and > 0.*column 0"),
        (np.r_[np.ones(5), np.nan, np.ones(506)].astype(np.float32), "column 5"),
    ],
)
def test_imatrix_validation(w, match: str) -> None:
    with pytest.raises(ValueError, match=f"iq3_s: .*{match}"):
        F.get("iq3_s").encode(IMAT["x/normal"], imatrix=w)


def test_row_length_must_be_whole_super_blocks() -> None:
    with pytest.raises(ValueError, match="block size 256"):
        F.get("iq2_s").encode(np.ones((2, 128), np.float32))


# -- llama.cpp's library on adversarial inputs (ggml_quantize_chunk with quant_weights, run in
# llama.cpp's child process: a native abort fails this test, not the test run) -------------------


def _adversarial() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Inputs that reach the rare branches: all-zero and near-zero blocks and sub-blocks (the
    EPS thresholds, IQ3_S's unadvanced pointers), constants, exact ties (sort order), one spike,
    one sign, huge and tiny magnitudes, sparse rows, and extreme importance vectors."""
    xs, w = adversarial_inputs(seed=12, n=512, tiny=1e-13, zero_row=False)
    cases: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name, x in xs.items():
        cases[name] = (x, None)
        cases[name + "_lognormal"] = (x, w["lognormal"])
    cases["heavy_extreme"] = (xs["heavy"], w["extreme"])
    cases["holes_extreme"] = (xs["holes"], w["extreme"])
    cases["ties_ones"] = (xs["ties"], w["ones"])
    return cases


@pytest.fixture(scope="module")
def llama_cpp_adversarial() -> dict[str, np.ndarray]:
    """``{"<type>/<case>": llama.cpp's bytes}`` for every adversarial case and IQ type."""
    return llama_cpp_cases(TYPES, _adversarial(), NEEDS_IMATRIX)


@pytest.mark.parametrize("t", TYPES)
def test_adversarial_against_llama_cpp(t: str, llama_cpp_adversarial: dict[str, np.ndarray]) -> None:
    fmt = F.get(t)
    checked = []
    for name, (x, w) in _adversarial().items():
        key = f"{t}/{name}"
        if key not in llama_cpp_adversarial:
            continue
        ref = llama_cpp_adversarial[key].tobytes()
        assert fmt.encode(x, imatrix=w, overflow="inf").to_bytes() == ref, key
        with np.errstate(all="ignore"):
            assert same_bits(fmt.decode(fmt.from_bytes(ref, x.shape)), gguf_decode(t, ref)), key
        checked.append(key)
    assert len(checked) >= 11
