"""Simulated KV-cache quantization (qlab.quantize.kvcache) on SmolLM2: float and rotated caches
leave the logits unchanged (transformers' own SDPA path is the reference), block formats equal
gguf-py's quantize/dequantize (llama.cpp's reference Python), bytes per token equal llama.cpp's
cache sizes computed by hand (f16: 2 bytes a value; q8_0: 34 bytes per 32; q4_0: 18 per 32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlab.quantize import kvcache as KV
from tests.quantize._fixtures import single_thread, smol  # noqa: F401

TEXT = "The cache, not the weights, dominates memory at long context. Keys have outlier channels"


def _logits(m, ids):
    with torch.no_grad():
        return m.model(ids).logits.double()


@pytest.fixture(scope="module")
def ids(smol):  # noqa: F811
    return smol.tokenizer(TEXT, return_tensors="pt")["input_ids"]


@pytest.fixture(scope="module")
def ref(smol, ids):  # noqa: F811
    return _logits(smol, ids)


@pytest.mark.parametrize("rotate", [False, True])
def test_float_cache_same_logits(smol, ids, ref, rotate: bool) -> None:  # noqa: F811
    m = smol.fresh()
    st = KV.quantize_kv(m, KV.KVSpec(None), KV.KVSpec(None), rotate=rotate)
    got = _logits(m, ids)
    assert len(st) == 30 and st[0]["tokens"] == ids.shape[1]
    assert (got - ref).abs().max().item() < 1e-3
    assert smol.model.config._attn_implementation != KV.NAME  # the cached original is untouched


def test_quantized_cache_changes_logits_in_order(smol, ids, ref) -> None:  # noqa: F811
    kls = []
    for fmt in ("int8", "int4", "int2"):
        m = smol.fresh()
        KV.quantize_kv(m, KV.KVSpec(fmt, "head"), KV.KVSpec(fmt, "head"))
        got = _logits(m, ids)
        p, q = torch.log_softmax(ref, -1), torch.log_softmax(got, -1)
        kls.append(float((p.exp() * (p - q)).sum(-1).mean()))
    assert 0 < kls[0] < kls[1] < kls[2], kls


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_block_formats_equal_gguf_py(fmt: str) -> None:
    gguf = pytest.importorskip("gguf")
    x = torch.randn(1, 3, 40, 64, generator=torch.Generator().manual_seed(1))
    y, nbytes = KV.encode(x, KV.KVSpec(fmt, "block32"))
    qt = getattr(gguf.GGMLQuantizationType, fmt.upper())
    rows = x.reshape(-1, 64).numpy()
    ref = gguf.quants.dequantize(gguf.quants.quantize(rows, qt), qt)
    np.testing.assert_array_equal(y.reshape(-1, 64).numpy(), ref)
    assert nbytes == x.numel() // 32 * (34 if fmt == "q8_0" else 18)


def test_bytes_per_token_llamacpp_sizes(smol) -> None:  # noqa: F811
    c = smol.model.config  # 30 layers, 3 KV heads x 64
    assert KV.bytes_per_token(c, KV.KVSpec(None), KV.KVSpec(None)) == 30 * 2 * 192 * 2
    assert KV.bytes_per_token(c, KV.KVSpec("q8_0", "block32"), KV.KVSpec("q8_0", "block32")) == 30 * 2 * 6 * 34
    assert KV.bytes_per_token(c, KV.KVSpec("q4_0", "block32"), KV.KVSpec("q8_0", "block32")) == 30 * 6 * (18 + 34)
    # int4 per head: 64 values at 4 bits + fp32 scale + uint8 zero
    assert KV.bytes_per_token(c, KV.KVSpec("int4", "head"), KV.KVSpec(None)) == 30 * (3 * (32 + 5) + 192 * 2)


def test_granularity_layouts() -> None:
    x = torch.randn(2, 3, 5, 8)
    for g in KV.GRANULARITIES:
        assert torch.equal(KV._unrows(KV._rows(x, g), x.shape, g), x)
    # per channel: one scale per (batch, head, channel) over the tokens
    y, _ = KV.encode(x, KV.KVSpec("int8", "channel"))
    xc = x[0, 1, :, 2]
    lo, hi = min(xc.min().item(), 0.0), max(xc.max().item(), 0.0)
    s = np.float32(hi - lo) / np.float32(255)
    assert (y[0, 1, :, 2] - xc).abs().max().item() <= s / 2 + 1e-6


def test_hadamard_spreads_key_outliers(smol, ids, monkeypatch) -> None:  # noqa: F811
    """int4 per-head keys lose less with the Hadamard: measured on SmolLM2's real post-RoPE keys."""
    seen: list[torch.Tensor] = []
    real = KV.encode
    monkeypatch.setattr(KV, "encode", lambda x, spec: (seen.append(x.clone()), real(x, spec))[1])
    m = smol.fresh()
    KV.quantize_kv(m, KV.KVSpec(None), KV.KVSpec(None))
    _logits(m, ids)
    keys = seen[0::2]
    from qlab.quantize.rotation import orthogonal

    h = orthogonal(64).float()
    err = {False: 0.0, True: 0.0}
    for k in keys:
        for rot in (False, True):
            kk = k @ h if rot else k
            err[rot] += float(((real(kk, KV.KVSpec("int4", "head"))[0] - kk) ** 2).sum())
    assert err[True] < 0.8 * err[False], err


def test_validation(smol) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="granularity"):
        KV.KVSpec("int8", "row")
    with pytest.raises(ValueError):
        KV.KVSpec("int9")
    with pytest.raises(ValueError, match="no LLaMA-style attention"):
        KV.quantize_kv(torch.nn.Linear(2, 2), KV.KVSpec(None), KV.KVSpec(None))
    with pytest.raises(ValueError, match="head_dim"):
        KV.encode(torch.zeros(3, 4), KV.KVSpec("int8"))
