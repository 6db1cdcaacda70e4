"""Sentence-encoder evaluation: agreement of a (quantized) encoder's embeddings with its fp32 model.

Two numbers over ``n >= 1000`` WikiText-2 sentences:

* cosine similarity between each sentence's embedding and the fp32 model's (mean and minimum);
* top-k neighbour overlap: for each sentence, its k nearest other sentences (cosine) under the
  model vs under fp32, ``|A & B| / k`` averaged -- a retrieval metric, since semantic search ranks
  neighbours and does not care about small rotations of the embedding space.

The fp32 reference embeddings come from a fresh, unmodified copy of the same model and are cached
per process (keyed by model and sentence list), so a format sweep embeds with fp32 once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from ..core.model import Loaded
from ..core.text import wikitext_sentences

_REFERENCE: dict[tuple[str, str], torch.Tensor] = {}


def embed(m: Loaded, sentences: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Embeddings ``(n, d)`` float32 of a sentence encoder (its pooling and normalization)."""
    from ..models.minilm import encode

    if m.kind != "sentence-encoder":
        raise ValueError(f"{m.name} is a {m.kind}, not a sentence encoder")
    cfg = m.config
    return encode(
        m.model, m.tokenizer, sentences, pooling=cfg.get("pooling", "mean"), normalize=cfg.get("normalize", True),
        max_seq_length=cfg.get("max_seq_length") or 512, batch_size=batch_size,
    )


def reference_embeddings(m: Loaded, sentences: Sequence[str]) -> torch.Tensor:
    """fp32 embeddings of ``sentences`` by an unmodified copy of ``m``'s model (cached per process)."""
    digest = hashlib.sha1("\x00".join(sentences).encode()).hexdigest()
    key = (m.key or str(m.source), digest)
    if key not in _REFERENCE:
        _REFERENCE[key] = embed(m.fresh(), sentences)
    return _REFERENCE[key]


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    """Mean overlap ``|N_a(i) & N_b(i)| / k`` of each row's k nearest other rows (cosine)."""
    if a.shape != b.shape:
        raise ValueError(f"embedding shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if not 0 < k < a.shape[0]:
        raise ValueError(f"k must be in 1..{a.shape[0] - 1} for {a.shape[0]} sentences, got {k}")

    def neighbours(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.normalize(x.double(), dim=1)
        sim = x @ x.T
        sim.fill_diagonal_(-torch.inf)  # a sentence is not its own neighbour
        return sim.topk(k, dim=1).indices

    na, nb = neighbours(a), neighbours(b)
    hits = (na[:, :, None] == nb[:, None, :]).any(-1).sum(1)
    return hits.double().mean().item() / k


def embedding_similarity(
    m: Loaded, sentences: Sequence[str] | None = None, n: int = 1000, k: int = 10, reference: torch.Tensor | None = None
) -> dict[str, float]:
    """Cosine similarity to fp32 (``cosine_mean``, ``cosine_min``) and ``top{k}_overlap`` over
    ``sentences`` (default: the first ``n`` WikiText-2 test sentences)."""
    sentences = wikitext_sentences(n) if sentences is None else list(sentences)
    ref = reference_embeddings(m, sentences) if reference is None else reference
    emb = embed(m, sentences)
    cos = torch.nn.functional.cosine_similarity(emb.double(), ref.double(), dim=1)
    return {
        "cosine_mean": cos.mean().item(),
        "cosine_min": cos.min().item(),
        f"top{k}_overlap": topk_overlap(emb, ref, k),
        "n_sentences": len(sentences),
    }


__all__ = ["embed", "embedding_similarity", "reference_embeddings", "topk_overlap"]
