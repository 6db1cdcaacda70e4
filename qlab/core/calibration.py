"""Model inputs: user calibration data as batches, and real example batches for a zoo model.

* :func:`to_batches` turns what a user passes as ``calibration=`` (tensors, tokenizer dicts,
  ``(x, y)`` pairs, text or sentences for a model with a tokenizer) into a list of batches;
* :func:`example_batches` builds real inputs for a zoo model: digits images, WikiText-2 sentences
  (calibration ones disjoint from the evaluation ones) or causal-LM token windows;
* :func:`run_batch` runs one forward pass on either kind of batch.

Calibrating on data disjoint from the evaluation data is the standard PTQ protocol (Nagel et al.,
2021, "A White Paper on Neural Network Quantization", arXiv:2106.08295, section 3.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from ..models.digits import load_split
from .model import Loaded, ModelLike
from .text import wikitext2_test, wikitext_sentences

Batch = torch.Tensor | Mapping[str, torch.Tensor]


def _no_batches(what: str) -> ValueError:
    return ValueError(
        f"calibration has no batches ({what}); static quantization needs at least one batch of "
        f"representative inputs, e.g. calibration=x_train[:256] or a list of tokenized batches"
    )


def to_batches(data: Any, model: Any = None, batch_size: int = 32, seq_len: int = 512) -> list[Batch]:
    """The model inputs of ``data`` as a list of batches (see the module docstring)."""
    if data is None:
        raise _no_batches("calibration=None")
    tok = getattr(model, "tokenizer", None)
    if isinstance(data, str):
        return _text(data, model, tok, batch_size, seq_len)
    if isinstance(data, torch.Tensor):
        if data.ndim == 0 or len(data) == 0:
            raise _no_batches(f"an empty tensor of shape {tuple(data.shape)}")
        return check_batches(list(data.split(batch_size)), model)
    if isinstance(data, Mapping):
        return check_batches([data], model)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data) and (
        data[1].ndim == 1 and len(data[0]) == len(data[1]) and data[1].dtype in (torch.int64, torch.int32)
    ):
        return to_batches(data[0], model, batch_size, seq_len)  # (x, y) labelled data
    if not isinstance(data, Iterable):
        raise TypeError(f"calibration must be tensors, dicts, (x, y) pairs or text; got {type(data).__name__}")
    items = list(data)
    if not items:
        raise _no_batches("an empty list")
    if all(isinstance(s, str) for s in items):
        return _sentences(items, model, tok, batch_size)
    out: list[Batch] = []
    for b in items:
        if isinstance(b, tuple | list) and len(b) == 2 and isinstance(b[0], torch.Tensor):
            b = b[0]
        if isinstance(b, torch.Tensor | Mapping):
            if (len(b) if isinstance(b, torch.Tensor) and b.ndim else 1) > 0:
                out.append(b)
        else:
            raise TypeError(f"a calibration batch must be a tensor, a dict or an (x, y) pair; got {type(b).__name__}")
    if not out:
        raise _no_batches("every batch is empty")
    return check_batches(out, model)


def check_token_ids(ids: torch.Tensor, model: Any, where: str = "calibration") -> None:
    """Token ids must be integers in ``[0, vocab_size)`` of ``model`` (an out-of-range id would
    raise an IndexError deep inside the embedding)."""
    vocab = getattr(getattr(_module(model), "config", None), "vocab_size", None)
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{where}: token ids must be an integer tensor, got dtype {ids.dtype}")
    if isinstance(vocab, int) and ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab:
            raise ValueError(
                f"{where}: token ids must lie in [0, {vocab}) (the model's vocab_size); got ids from {lo} to {hi}"
            )


def check_batches(batches: list[Batch], model: Any) -> list[Batch]:
    """Check tensor batches against ``model`` before any hook is attached: token ids for a model
    with a vocabulary, else float inputs that fit its first Conv/Linear layer. Raise ``ValueError``
    naming the batch, its shape/dtype and what the model takes."""
    mod = _module(model)
    if mod is None:
        return batches
    has_vocab = isinstance(getattr(getattr(mod, "config", None), "vocab_size", None), int)
    first = next((m for m in mod.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Linear)), None)
    for i, b in enumerate(batches):
        if has_vocab:
            ids = b.get("input_ids") if isinstance(b, Mapping) else b
            if isinstance(ids, torch.Tensor):
                check_token_ids(ids, model, f"calibration batch {i}")
            continue
        if not isinstance(b, torch.Tensor) or first is None:
            continue
        if isinstance(first, torch.nn.Linear):
            ok, want = b.ndim >= 1 and b.shape[-1] == first.in_features, f"(batch, ..., {first.in_features})"
        else:
            nd = 3 if isinstance(first, torch.nn.Conv1d) else 4
            ok = b.ndim == nd and b.shape[1] == first.in_channels
            want = f"(batch, {first.in_channels}{', L' if nd == 3 else ', H, W'})"
        if not ok or not b.dtype.is_floating_point:
            raise ValueError(
                f"calibration batch {i}: a {b.dtype} tensor of shape {tuple(b.shape)} does not fit the model's "
                f"first layer ({type(first).__name__} expecting float inputs of shape {want}); "
                f"e.g. digits-cnn takes (batch, 1, 8, 8) float32 images"
            )
    return batches


def _module(model: Any) -> torch.nn.Module | None:
    mod = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    return mod if isinstance(mod, torch.nn.Module) else None


def _need_tokenizer(tok: Any) -> None:
    if tok is None:
        raise ValueError("text calibration needs a model with a tokenizer (pass a qlab.models.load() result)")


def _text(text: str, model: ModelLike, tok: Any, batch_size: int, seq_len: int) -> list[Batch]:
    if not text.strip():
        raise _no_batches("empty text")
    _need_tokenizer(tok)
    if getattr(model, "kind", "") == "causal-lm":
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        return [{"input_ids": w[None]} for w in ids.split(seq_len)]
    return _sentences([s for s in text.splitlines() if s.strip()], model, tok, batch_size)


def _sentences(sentences: list[str], model: ModelLike, tok: Any, batch_size: int) -> list[Batch]:
    _need_tokenizer(tok)
    cfg = getattr(model, "config", None)
    max_len = (cfg.get("max_seq_length") if isinstance(cfg, dict) else None) or 512
    return [
        dict(tok(sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_len, return_tensors="pt"))
        for i in range(0, len(sentences), batch_size)
    ]




CALIBRATION_OFFSET = 2000  # calibration sentences start here: qlab.eval uses the first 1000
LM_WINDOW = 128  # tokens per causal-LM example window


def example_batches(m: Loaded, n: int = 128, batch_size: int = 32, split: str = "calibration") -> list[Any]:
    """Real input batches for ``m``: ``split="calibration"`` (digits train images; WikiText-2
    sentences disjoint from the evaluation sentences; for a causal LM, token windows from the
    second half of WikiText-2 test) or ``"eval"`` (digits test images; the evaluation sentences;
    windows from the start of the text). Sentence-encoder batches are tokenizer dicts of int64
    tensors (``input_ids``, ``attention_mask``, ``token_type_ids``) padded to the longest
    sentence; causal-LM batches are ``(batch, 128)`` token-id tensors.
    """
    if split not in ("calibration", "eval"):
        raise ValueError(f"split must be 'calibration' or 'eval', got {split!r}")
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"n and batch_size must be positive, got n={n}, batch_size={batch_size}")
    if m.kind == "image-classifier":
        x, _ = load_split("train" if split == "calibration" else "test")
        return list(x[:n].split(batch_size))
    if m.kind == "sentence-encoder":
        start = CALIBRATION_OFFSET if split == "calibration" else 0
        text = wikitext_sentences(start + n)[start:]
        return [tokenize(m, text[i : i + batch_size]) for i in range(0, n, batch_size)]
    if m.kind == "causal-lm":  # n windows of LM_WINDOW tokens (calibration: from the second half of the text)
        text = wikitext2_test()
        text = text[len(text) // 2 :] if split == "calibration" else text
        ids = m.tokenizer(text[: 8 * n * LM_WINDOW], return_tensors="pt")["input_ids"][0]
        if ids.numel() < n * LM_WINDOW:
            raise ValueError(f"not enough text for {n} windows of {LM_WINDOW} tokens")
        return list(ids[: n * LM_WINDOW].view(n, LM_WINDOW).split(batch_size))
    raise ValueError(f"no example batches for a {m.kind} model ({m.name}); pass input batches explicitly")


def tokenize(m: Loaded, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
    """A padded tokenizer batch for a sentence encoder (truncated at its max sequence length)."""
    max_len = m.config.get("max_seq_length") or 256
    enc = m.tokenizer(list(sentences), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def run_batch(model: ModelLike, batch: Any) -> Any:
    """One forward call on a batch as :func:`to_batches` / :func:`example_batches` make them
    (``model(**batch)`` for dicts)."""
    return model(**batch) if isinstance(batch, Mapping) else model(batch)



__all__ = ["CALIBRATION_OFFSET", "LM_WINDOW", "Batch", "check_batches", "check_token_ids", "example_batches", "run_batch",
           "to_batches", "tokenize"]
