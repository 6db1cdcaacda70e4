"""What :func:`~qlab.backends.llamacpp.export.export_gguf` writes besides the weights: the GGUF
key/value pairs (hyper-parameters, tokenizer) and the tensor table.

* A model loaded from a GGUF file: copied from that file (:func:`gguf_source`), so the export is
  the same model re-quantized.
* A model loaded from a Hugging Face directory (a ``*ForCausalLM`` of :data:`qlab.models.archs.ARCHS`):
  built from its config and tokenizer (:func:`hf_source`), with the keys and tensor names
  llama.cpp's ``convert_hf_to_gguf.py`` writes for the family: ``<arch>.*`` hyper-parameters
  (:func:`qlab.models.archs.hparams`), and for a byte-level BPE tokenizer (``TextModel._set_vocab_gpt2``)
  ``tokenizer.ggml.model = "gpt2"``, ``pre``, ``tokens``, ``token_type`` (1 normal, 3 control =
  special added token, 4 user-defined = other added token, 5 unused padding), ``merges``, the
  special token ids and ``add_bos_token``, and the chat template.

llama.cpp picks its pre-tokenizer regex by the ``tokenizer.ggml.pre`` name; the converter
recognises known tokenizers by a hash of their output. Here the name is read off the
tokenizer's own pre-tokenizer: a bare ``ByteLevel`` with its built-in regex is GPT-2's
(``"gpt-2"``), a ``Split`` on transformers' ``Qwen2Tokenizer`` regex is ``"qwen2"``; for any other pass ``tokenizer_pre=`` (e.g. ``"llama-bpe"``, ``"qwen2"``), and check
with :func:`qlab.backends.llamacpp.tokenize` that llama.cpp's tokens match.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...models.archs import Arch, arch_of_model, hparams
from ...quantize.imatrix import gguf_name_map

__all__ = ["Source", "gguf_source", "hf_source", "tokenizer_kv"]


@dataclass(frozen=True)
class Source:
    """The export's key/value pairs and tensor table (GGUF names, shapes in torch order)."""

    kv: tuple[tuple[str, Any, Any, Any], ...]  # (key, value, GGUFValueType, array element type)
    tensors: tuple[tuple[str, tuple[int, ...]], ...]  # (name, shape in torch order)
    name: str = "source"  # for messages: the file or directory

    def get(self, key: str, default: Any = None) -> Any:
        return next((v for k, v, _, _ in self.kv if k == key), default)


@functools.lru_cache(maxsize=4)
def _read_gguf(path: str, mtime_ns: int, size: int) -> Source:
    """Parse the source once per process: gguf-py's ``GGUFReader`` builds a numpy view for
    every vocabulary string (seconds for 49k tokens); exports of one model share the result."""
    import gguf

    reader = gguf.GGUFReader(path)
    kv = []
    for key, f in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        kv.append((key, f.contents(), vtype, sub))
    tensors = tuple((t.name, tuple(int(d) for d in reversed(t.shape.tolist()))) for t in reader.tensors)
    return Source(tuple(kv), tensors, Path(path).name)


def gguf_source(path: Path) -> Source:
    """Key/value pairs and tensor table of the GGUF file ``path`` (cached per file version)."""
    st = path.stat()
    return _read_gguf(str(path.resolve()), st.st_mtime_ns, st.st_size)


def _qwen2_regex() -> str | None:
    """Qwen2's pre-tokenizer regex, as transformers' ``Qwen2Tokenizer`` builds it (also what
    transformers gives any Qwen2/Qwen3 directory's byte-level BPE tokenizer)."""
    try:
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
    except ImportError:  # pragma: no cover - transformers moved it
        return None
    return PRETOKENIZE_REGEX


def _pre_of(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"export_gguf: the tokenizer ({type(tokenizer).__name__}) is not a fast (tokenizers) "
                         f"tokenizer; only byte-level BPE tokenizers are written")
    spec = json.loads(backend.to_str())
    model, pre = spec.get("model", {}), spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"export_gguf: tokenizer model {model.get('type')!r} is not written (only byte-level "
                         f"BPE, tokenizer.ggml.model='gpt2'); convert with llama.cpp's convert_hf_to_gguf.py")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    split = [p for p in pre.get("pretokenizers", []) if p.get("type") == "Split"]
    if len(split) == 1 and split[0].get("pattern", {}).get("Regex") == _qwen2_regex():
        return "qwen2"
    raise ValueError(f"export_gguf: cannot name llama.cpp's pre-tokenizer for pre_tokenizer {json.dumps(pre)[:120]}; "
                     f"pass tokenizer_pre= with llama.cpp's name (e.g. 'llama-bpe', 'qwen2', 'smollm')")


def tokenizer_kv(tokenizer: Any, n_vocab: int, pre: str | None = None) -> list[tuple[str, Any, Any, Any]]:
    """The ``tokenizer.ggml.*`` key/value pairs of a byte-level BPE transformers tokenizer, its
    vocabulary padded to the model's ``n_vocab`` rows (``[PAD<i>]``, type unused)."""
    import gguf

    v = gguf.GGUFValueType
    pre = _pre_of(tokenizer) if pre is None else pre
    if not isinstance(pre, str) or not pre:
        raise ValueError(f"tokenizer_pre must be a llama.cpp pre-tokenizer name, got {pre!r}")
    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise ValueError(f"export_gguf: the tokenizer has {len(vocab)} tokens, the model's embedding {n_vocab} rows")
    by_id = {i: t for t, i in vocab.items()}
    added = {i: a for i, a in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
            continue
        tokens.append(by_id[i])
        a = added.get(i)
        types.append(int(gguf.TokenType.NORMAL if a is None else
                         gguf.TokenType.CONTROL if a.special else gguf.TokenType.USER_DEFINED))
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"].get("merges", [])
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    kv: list[tuple[str, Any, Any, Any]] = [
        ("tokenizer.ggml.model", "gpt2", v.STRING, None),
        ("tokenizer.ggml.pre", pre, v.STRING, None),
        ("tokenizer.ggml.tokens", tokens, v.ARRAY, v.STRING),
        ("tokenizer.ggml.token_type", types, v.ARRAY, v.INT32),
        ("tokenizer.ggml.merges", merges, v.ARRAY, v.STRING),
    ]
    for key, attr in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unknown", "unk_token_id"),
                      ("padding", "pad_token_id")):
        idx = getattr(tokenizer, attr, None)
        if isinstance(idx, int):
            kv.append((f"tokenizer.ggml.{key}_token_id", idx, v.UINT32, None))
    bos = getattr(tokenizer, "bos_token_id", None)
    adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
    kv.append(("tokenizer.ggml.add_bos_token", bool(adds_bos), v.BOOL, None))
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        kv.append(("tokenizer.chat_template", template, v.STRING, None))
    return kv


def hf_source(model: Any, tokenizer: Any, name: str = "model", tokenizer_pre: str | None = None) -> Source:
    """Key/value pairs and tensor table for a transformers causal LM of a supported family
    (ValueError naming the supported ones otherwise), as ``convert_hf_to_gguf.py`` would write them."""
    import gguf

    arch: Arch = arch_of_model(model)
    config = model.config
    v = gguf.GGUFValueType
    kinds = {"u32": v.UINT32, "f32": v.FLOAT32}
    kv: list[tuple[str, Any, Any, Any]] = [("general.name", name, v.STRING, None)]
    kv += [(k, val, kinds[kind], None) for k, val, kind in hparams(arch, config)]
    if tokenizer is None:
        raise ValueError("export_gguf: the model has no tokenizer to write (m.tokenizer is None)")
    n_vocab = int(model.get_input_embeddings().weight.shape[0])
    kv += tokenizer_kv(tokenizer, n_vocab, tokenizer_pre)
    state = model.state_dict()
    to_gguf = gguf_name_map(state, arch.gguf, int(config.num_hidden_layers))
    tied = bool(getattr(config, "tie_word_embeddings", False))
    unmapped = [k for k in state if k not in to_gguf and not (tied and k == "lm_head.weight")]
    if unmapped:
        raise ValueError(f"export_gguf: {arch.hf_class} parameters without a GGUF name: {unmapped[:5]}")
    tensors = tuple((g, tuple(state[h].shape)) for h, g in to_gguf.items() if not (tied and g == "output.weight"))
    return Source(tuple(kv), tensors, name)
