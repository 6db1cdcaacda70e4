"""MiniLM embeddings: identical to sentence-transformers; cosine / top-k overlap vs fp32."""

from __future__ import annotations

import pytest
import torch

import qlab
from qlab.eval import embed, embedding_similarity, reference_embeddings, topk_overlap, wikitext_sentences
from qlab.models import minilm_dir
from tests.models._offline import no_network


def test_embeddings_equal_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    sentences = wikitext_sentences(20) + ["", "short", "word " * 400]  # empty, tiny, truncated at 256 tokens
    with no_network():
        model = st.SentenceTransformer(str(minilm_dir()), device="cpu", local_files_only=True)
    want = model.encode(sentences, convert_to_tensor=True, batch_size=16)
    got = embed(minilm, sentences, batch_size=16)
    assert got.shape == (23, 384) and got.dtype == torch.float32
    torch.testing.assert_close(got, want.cpu(), rtol=0, atol=2e-6)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(23))


def test_wikitext_sentences():
    s = wikitext_sentences(1000)
    assert len(s) == len(set(s)) == 1000
    assert s[0] == "Robert Boulter is an English film, television and theatre actor."
    assert all(6 <= len(x.split()) <= 48 and "@" not in x for x in s)
    with pytest.raises(ValueError, match="sentences"):
        wikitext_sentences(10**6)


def test_topk_overlap():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g)
    assert topk_overlap(a, a.clone(), 10) == 1.0
    assert topk_overlap(a, a * 3.0, 10) == 1.0  # cosine: scale-free
    assert topk_overlap(a, torch.randn(200, 16, generator=g), 10) < 0.2  # unrelated: ~k/n by chance
    with pytest.raises(ValueError, match="k must"):
        topk_overlap(a, a, 200)


def test_fp32_self_check_and_quantized_encoder(minilm):
    sentences = wikitext_sentences(40)
    same = embedding_similarity(minilm, sentences, k=10)
    assert same["cosine_min"] == pytest.approx(1.0, abs=1e-6) and same["top10_overlap"] == 1.0
    assert reference_embeddings(minilm, sentences) is reference_embeddings(minilm, sentences)  # cached
    q = minilm.fresh()
    with torch.no_grad():
        for name, p in q.model.named_parameters():
            if p.ndim == 2 and "encoder" in name:
                p.copy_(torch.from_numpy(qlab.roundtrip(p.numpy(), "int3")))
    out = q.evaluate(sentences=sentences, k=10)
    assert 0.5 < out["cosine_mean"] < 0.999 and out["cosine_min"] < out["cosine_mean"]
    assert 0.2 < out["top10_overlap"] < 1.0 and out["n_sentences"] == 40
    # the reference is the unmodified model, not the quantized copy
    torch.testing.assert_close(embed(minilm, sentences[:5]), reference_embeddings(minilm, sentences)[:5])
