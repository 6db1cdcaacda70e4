"""GGUF side of recipes (GGML type names, file types) and the Q/K row permutation, checked against
transformers' own inverse. The recipe resolver and llama.cpp's fallback rules are
``qlab.quantize.recipes`` (tested in tests/quantize); the export tests check the written types."""

from __future__ import annotations

import numpy as np
import pytest

from qlab.backends.llamacpp import file_type, ggml_type, permute_qk, unpermute_qk


def test_ggml_type_names() -> None:
    assert [ggml_type(f) for f in ("f32", "fp16", "bf16", "q4_0", "Q4_K", "iq4_nl", "mxfp4")] == [
        "f32", "f16", "bf16", "q4_0", "q4_k", "iq4_nl", "mxfp4",
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", ["nf4", "fp8_e4m3", "int4", "mxfp8_e4m3", "nvfp4"])
def test_formats_without_ggml_type_are_refused(fmt: str) -> None:
    with pytest.raises(ValueError, match="no GGML type"):
        ggml_type(fmt)


def test_file_type() -> None:
    """llama.h's ``enum llama_ftype`` values; mixes of explicit patterns are left to llama.cpp."""
    assert file_type("f32") == 0 and file_type(None) == 0 and file_type("fp16") == 1
    assert file_type("q8_0") == 7 and file_type("q4_k_m") == 15 and file_type("llama:q4_0") == 2
    assert file_type({"*": "q4_0"}) is None


@pytest.mark.parametrize(("rows", "n_head"), [(576, 9), (192, 3), (8, 1)])
def test_qk_permutation_is_transformers_inverse(rows: int, n_head: int) -> None:
    """transformers un-permutes Q/K rows when it reads a GGUF; permute_qk must undo exactly that."""
    tp = pytest.importorskip("transformers.modeling_gguf_pytorch_utils")
    w = np.random.default_rng(0).standard_normal((rows, 12)).astype(np.float32)
    g = permute_qk(w, n_head)
    back = tp.LlamaTensorProcessor()._reverse_permute_weights(g, n_head, n_head)
    np.testing.assert_array_equal(back, w)
    np.testing.assert_array_equal(unpermute_qk(g, n_head), w)
    assert not np.array_equal(g, w)  # rows really move
    with pytest.raises(ValueError, match="heads"):
        permute_qk(w[:5], 2)
