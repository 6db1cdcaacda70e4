"""``encode(x, imatrix=w)`` for the legacy, K-quant, IQ4 and ternary GGML types: byte-exact with
llama.cpp's ``ggml_quantize_chunk`` with ``quant_weights``.

References: llama.cpp's own bytes (``tests/data/imatrix/ggml_imatrix.npz``, see its README),
gguf-py's ``dequantize``, and llama.cpp's library itself on adversarial inputs (in its child
process, so that a native abort fails a test instead of killing pytest). The IQ lattice types have
their own file (``test_iq_lattice.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf import quants as gq

import qlab.formats as F
import qlab.formats.gguf  # noqa: F401  (registers the formats)

from ._oracle import adversarial_inputs, llama_cpp_cases

DATA = Path(__file__).resolve().parents[2] / "data"
IMAT = dict(np.load(DATA / "imatrix" / "ggml_imatrix.npz"))
#: llama.cpp reads quant_weights for these ...
WEIGHTED = ["q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"]
#: ... and ignores them for these (``(void)quant_weights``)
IGNORED = ["q8_0", "tq1_0", "tq2_0"]
TYPES = WEIGHTED + IGNORED
ORACLE_KEYS = sorted(k for k in IMAT if k.split("/")[0] in TYPES)


def gguf_decode(t: str, raw: bytes) -> np.ndarray:
    return gq.dequantize(np.frombuffer(raw, np.uint8), GGMLQuantizationType[t.upper()]).ravel()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(
        np.asarray(a, np.float32).ravel().view(np.uint32), np.asarray(b, np.float32).ravel().view(np.uint32)
    )


# -- llama.cpp's bytes ----------------------------------------------------------------------------
def test_oracle_covers_every_type() -> None:
    assert {k.split("/")[0] for k in ORACLE_KEYS} == set(TYPES)
    assert len(ORACLE_KEYS) == 14 * 9  # 3 matrices x (2 importance vectors + none)


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


@pytest.mark.parametrize("t", TYPES)
def test_imatrix_changes_bytes_only_where_llama_cpp_reads_it(t: str) -> None:
    """The weighted types give other bytes with an imatrix (the oracle's two vectors differ from
    ``none`` in most blocks); the ignoring types give the plain bytes."""
    x = IMAT["x/student3"]
    fmt = F.get(t)
    plain = fmt.encode(x).to_bytes()
    weighted = fmt.encode(x, imatrix=IMAT["imatrix/lognormal"]).to_bytes()
    assert (weighted != plain) == (t in WEIGHTED)


@pytest.mark.parametrize("t", WEIGHTED)
def test_imatrix_indexes_columns(t: str) -> None:
    """The imatrix follows the columns: a 3-D tensor encodes like its rows, and permuting the
    importance vector (not the data) changes the bytes."""
    x = IMAT["x/normal"]
    w = IMAT["imatrix/lognormal"]
    fmt = F.get(t)
    flat = fmt.encode(x, imatrix=w)
    cube = fmt.encode(x.reshape(2, 8, 512), imatrix=w)
    assert cube.to_bytes() == flat.to_bytes()
    assert fmt.decode(cube).shape == (2, 8, 512)
    assert fmt.encode(x, imatrix=np.ascontiguousarray(w[::-1])).to_bytes() != flat.to_bytes()
    # a strided (non-contiguous) view of the same values gives the same bytes
    w2 = np.repeat(w, 2)[::2]
    assert fmt.encode(x, imatrix=w2).to_bytes() == flat.to_bytes()


# -- options --------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", ["q4_0", "q4_k", "iq4_xs", "q8_0", "tq2_0"])
@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.ones(512, np.float64), r"1-D float32 .*got array of float64, shape \(512,\)"),
        (np.ones((1, 512), np.float32), r"1-D float32 .*shape \(1, 512\)"),
        ([1.0] * 512, "1-D float32 .*got list"),
        (np.ones(256, np.float32), r"imatrix has 256 values, but rows have 512 \(last axis of shape \(16, 512\)\)"),
        (np.r_[np.ones(511), 0].astype(np.float32), r"finite and > 0.*column 511: np.float32\(0.0\)"),
        (np.r_[-np.ones(1), np.ones(511)].astype(np.float32), r"finite and > 0.*column 0: np.float32\(-1.0\)"),
        (np.r_[np.ones(5), np.nan, np.ones(506)].astype(np.float32), r"column 5: np.float32\(nan\)"),
        (np.r_[np.ones(7), np.inf, np.ones(504)].astype(np.float32), r"column 7: np.float32\(inf\)"),
    ],
)
def test_imatrix_validation(t: str, w, match: str) -> None:
    """Bad importance vectors are refused, by every GGML type alike (one shared check), naming
    the value and what is valid."""
    with pytest.raises(ValueError, match=f"{t}: .*{match}"):
        F.get(t).encode(IMAT["x/normal"], imatrix=w)


def test_validation_before_work() -> None:
    """The option is checked before the data: a bad imatrix fails even for an empty tensor."""
    with pytest.raises(ValueError, match="q4_k: imatrix must be finite"):
        F.get("q4_k").encode(np.zeros((0, 256), np.float32), imatrix=np.zeros(256, np.float32))
    empty = F.get("q4_k").encode(np.zeros((0, 256), np.float32), imatrix=np.ones(256, np.float32))
    assert empty.to_bytes() == b""


# -- llama.cpp's library on adversarial inputs ----------------------------------------------------
def _adversarial() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Inputs that reach the rare branches of the weighted searches: all-zero and near-zero blocks
    and sub-blocks (GROUP_MAX_EPS), constants (max == min), exact ties, one spike, one sign, huge
    and tiny magnitudes, sparse rows, heavy tails; importance vectors from flat to 1e12 apart."""
    xs, w = adversarial_inputs(seed=7, n=1024, tiny=1e-16, zero_row=True)
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, x in xs.items():
        cases[name + "_lognormal"] = (x, w["lognormal"])
    cases["heavy_extreme"] = (xs["heavy"], w["extreme"])
    cases["holes_extreme"] = (xs["holes"], w["extreme"])
    cases["ties_ones"] = (xs["ties"], w["ones"])
    cases["const_extreme"] = (xs["const"], w["extreme"])
    return cases


@pytest.fixture(scope="module")
def llama_cpp_adversarial() -> dict[str, np.ndarray]:
    """``{"<type>/<case>": llama.cpp's bytes}`` for every adversarial case and type."""
    return llama_cpp_cases(TYPES, _adversarial())


@pytest.mark.parametrize("t", TYPES)
def test_adversarial_against_llama_cpp(t: str, llama_cpp_adversarial: dict[str, np.ndarray]) -> None:
    fmt = F.get(t)
    cases = _adversarial()
    for name, (x, w) in cases.items():
        key = f"{t}/{name}"
        ref = llama_cpp_adversarial[key].tobytes()
        assert fmt.encode(x, imatrix=w, overflow="inf").to_bytes() == ref, key
        with np.errstate(all="ignore"):
            assert same_bits(fmt.decode(fmt.from_bytes(ref, x.shape)), gguf_decode(t, ref)), key
    assert len(cases) == 12
