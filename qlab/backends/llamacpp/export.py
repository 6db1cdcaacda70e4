"""Write a (quantized) LLaMA, Qwen2, Qwen3 or Gemma 3 model as a GGUF file that llama.cpp loads, with qlab's encoders.

Every GGML tensor is produced by ``qlab.formats.get(type).encode(w).to_bytes()`` -- qlab's own,
byte-exact implementation of ggml-quants.c -- and written with gguf-py's ``GGUFWriter``; which
type each weight gets is decided by ``qlab.quantize``'s recipe resolver (see :mod:`.recipe`).
The tokenizer and model metadata (every key/value pair) are copied from the GGUF the model was
loaded from (``m.source``), so the file is the same model, re-quantized; a model loaded from a
Hugging Face directory gets them written from its config and tokenizer (:mod:`.source`). The tests check the
result against llama.cpp's own quantizer byte for byte (Q8_0, Q4_0 and the Q4_K_M mix).

Conventions that differ between transformers and llama.cpp are undone here (the table of
families and their quirks: :mod:`qlab.models.archs`):

* **names**: HF ``model.layers.N.self_attn.q_proj.weight`` is GGUF ``blk.N.attn_q.weight``
  (gguf-py's ``TensorNameMap``, the table transformers uses in reverse when it loads a GGUF).
* **Q/K rows**: llama.cpp's converter (``convert_hf_to_gguf.py``, ``LlamaModel.permute``) reorders
  the rows of ``attn_q``/``attn_k`` inside every head from HF's "rotate half" RoPE layout to
  GGML's interleaved pairs; transformers un-permutes on load (``LlamaTensorProcessor``). We
  re-apply the permutation. It only moves whole rows, and GGML blocks run along a row, so
  ``encode(permute(w))`` holds exactly the blocks of ``permute(encode(w))``: the exported weights
  are bit-identical to qlab's simulated quantization of the HF model. LLaMA only: Qwen2/3 and
  Gemma 3 use GGML's NEOX rope, HF's own layout.
* **Gemma's norms**: GGUF stores ``1 + w`` of transformers' ``x * (1 + w)`` RMSNorm.

Norm weights stay float32 (llama.cpp never quantizes 1-D tensors). With tied embeddings
(SmolLM2) there is no ``output.weight``: llama.cpp reuses ``token_embd.weight`` as the output
matrix, exactly as transformers ties ``lm_head`` to ``embed_tokens``.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.model import Loaded
from ...core.report import Report
from ...files import atomic_path
from ...formats import get as get_format
from ...formats.specs import GGML_TYPES
from ...models.archs import Arch, arch_by_gguf, arch_of_model, is_norm
from ...quantize.imatrix import IMatrix, gguf_name_map, module_vectors
from .recipe import TensorChoice, file_type, resolve_types
from .source import Source, gguf_source, hf_source

_source = gguf_source  # (the tests' name for it)

__all__ = ["ExportReport", "TensorRow", "export_gguf", "gguf_name_map", "permute_qk", "unpermute_qk"]

_SKIP_KEYS = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment"}


@dataclass
class TensorRow:
    """One tensor of the exported file."""

    gguf_name: str
    hf_name: str
    shape: tuple[int, ...]
    requested: str
    used: str
    reason: str
    nbytes: int
    fallback: bool = False

    @property
    def name(self) -> str:
        return self.gguf_name

    @property
    def params(self) -> int:
        return int(np.prod(self.shape))

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.params if self.params else float("nan")


@dataclass
class ExportReport(Report):
    """What :func:`export_gguf` wrote: per-tensor types and bytes, fallbacks, file size, time. A
    :class:`qlab.core.report.Report` whose rows are every tensor of the file (norms included, so
    ``bits_per_weight`` is the file's tensor bytes over all parameters)."""

    path: Path
    recipe: Any
    rows: list[TensorRow] = field(default_factory=list)
    file_bytes: int = 0
    seconds: float = 0.0
    other_params: int = 0  # every parameter is a tensor row of the file

    COLUMNS: ClassVar[tuple[tuple[str, str, str | None], ...]] = (
        ("gguf_name", "tensor", None), ("shape", "shape", None), ("requested", "requested", None),
        ("used", "used", None), ("nbytes", "bytes", "d"), ("reason", "note", None))  # fmt: skip
    NOUN: ClassVar[str] = "tensor"

    @property
    def layers(self) -> list[TensorRow]:  # type: ignore[override]
        return self.rows

    @property
    def tensor_bytes(self) -> int:
        return self.total_bytes

    @property
    def n_params(self) -> int:
        return self.total_params

    @property
    def fallbacks(self) -> list[TensorRow]:
        """Tensors written with another type than requested (llama.cpp's row-length fallback)."""
        return [r for r in self.rows if r.fallback]

    def types(self) -> dict[str, int]:
        """Number of tensors per written type."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.used] = out.get(r.used, 0) + 1
        return out

    def summary(self) -> str:
        return (f"{len(self.rows)} tensors, {self.tensor_bytes / 1e6:.2f} MB of tensor data "
                f"({self.bits_per_weight:.3f} bits/weight), file {self.file_bytes / 1e6:.2f} MB, "
                f"{len(self.fallbacks)} fallback(s), {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "recipe": self.recipe,
            "rows": [asdict(r) for r in self.rows],
            "tensor_bytes": self.tensor_bytes,
            "file_bytes": self.file_bytes,
            "bits_per_weight": self.bits_per_weight,
            "seconds": self.seconds,
        }


# -- layout conventions --------------------------------------------------------------------------
def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF row order -> llama.cpp row order of a Q or K projection (``n_head`` = its head count).

    Within each head HF stores the rows as ``[first halves | second halves]`` of the rotary pairs;
    GGML wants the pairs interleaved. View the rows as (head, half, i) and swap to (head, i, half).
    """
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"{rows} rows cannot be split into {n_head} heads of rotary pairs")
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of :func:`permute_qk` (what transformers applies when it loads a GGUF)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _copy_metadata(src: Source, writer: Any) -> None:
    """Write every key/value pair of the source (tokenizer, hyper-parameters, chat template)."""
    for key, value, vtype, sub in src.kv:
        if key not in _SKIP_KEYS:
            writer.add_key_value(key, value, vtype, sub_type=sub)
    if src.get("general.alignment") is not None:
        writer.add_custom_alignment(int(src.get("general.alignment")))


def _encode(w: np.ndarray, fmt: str, imatrix: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """Bytes of ``w`` (1-D, or rows x cols float32) in GGML type ``fmt``, as uint8 (rows, row_bytes);
    ``imatrix``: the importance vector of ``w``'s columns (quantized GGML types only)."""
    import gguf

    raw_type = gguf.GGMLQuantizationType(GGML_TYPES[fmt][0])
    if fmt == "f32":
        data = np.ascontiguousarray(w, dtype=np.float32)
    elif fmt in ("f16", "bf16"):  # qlab's IEEE half / bfloat16 codes, round-to-nearest-even like ggml
        enc = get_format("fp16" if fmt == "f16" else "bf16").encode(w)
        data = enc.parts["codes"].astype(np.uint16, copy=False)
    else:
        opts = {} if imatrix is None else {"imatrix": imatrix}
        data = np.frombuffer(get_format(fmt).encode(w, **opts).to_bytes(), dtype=np.uint8)
    raw = data.view(np.uint8)  # gguf-py turns the byte shape back into the element shape
    return (raw.reshape(w.shape[0], -1) if w.ndim == 2 else raw.reshape(-1)), raw_type


def export_gguf(
    m: Loaded,
    path: str | Path,
    recipe: Any = "f32",
    *,
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    source: str | Path | None = None,
    ftype: int | None = None,
    imatrix: Any = None,
    tokenizer_pre: str | None = None,
) -> ExportReport:
    """Write ``m`` (from :func:`qlab.models.load`) as a GGUF file; return an :class:`ExportReport`.

    ``recipe``, ``include``, ``exclude``: as in :func:`qlab.quantize_model` (same resolver) -- a
    format name, ``{fnmatch pattern: format}`` (unmatched weights stay float32) or a llama.cpp mix
    such as ``"q4_k_m"``; only formats with a GGML type can be written. Norms are always float32.
    Rows that do not fit a type's block follow llama.cpp's fallback (per tensor in the report, and
    a warning). The weights are encoded as they are now: export the float model, or a model
    already quantized by ``quantize_model`` with ``recipe="f32"`` to write exactly its simulated
    weights. ``source`` overrides ``m.source`` (the GGUF whose tokenizer/metadata are copied);
    ``ftype`` overrides ``general.file_type`` (set for single-format and preset recipes, else left
    for llama.cpp to guess from the tensor types). ``imatrix``: an importance matrix
    (:class:`qlab.quantize.imatrix.IMatrix`, an imatrix .gguf path, or a mapping of GGUF tensor /
    module names to vectors); each quantized tensor gets its vector, as ``llama-quantize --imatrix``
    gives ``quant_weights`` to ``ggml_quantize_chunk``, and the ``quantize.imatrix.*`` keys
    llama-quantize adds are written. Tensors without a vector are quantized without; types that
    require one (iq2_xxs, iq2_xs, iq1_s) raise naming the tensor.

    Architectures: those of :data:`qlab.models.archs.ARCHS` (LLaMA, Qwen2, Qwen3, Gemma 3), loaded
    from a GGUF file or from a Hugging Face directory; for a directory the GGUF hyper-parameters
    and tokenizer are written from the model's config and tokenizer (:mod:`.source`;
    ``tokenizer_pre``: llama.cpp's pre-tokenizer name when it cannot be read off the tokenizer).
    Any other architecture raises a ValueError listing the supported ones.
    """

    from ...quantize.recipes import torch_module

    t0 = time.perf_counter()
    model = torch_module(m)  # (LlamaForCausalLM has a ``.model`` of its own)
    given = source if source is not None else getattr(m, "source", None)
    source = Path(given or "")
    from_gguf = source.suffix == ".gguf" and source.is_file()
    if not given or (not from_gguf and not source.is_dir()):
        raise ValueError(
            f"export_gguf copies the tokenizer and metadata from the GGUF file the model was loaded "
            f"from (or writes them from its Hugging Face directory's config and tokenizer); {source!s} "
            f"is neither (pass source=... with the original .gguf or model directory)"
        )
    target = Path(path)
    if from_gguf and (target.resolve() == source.resolve() or (target.exists() and target.samefile(source))):
        raise ValueError(
            f"export_gguf: path {str(path)!r} is the model's own source GGUF ({source}); writing there "
            f"would overwrite the file the model and its tokenizer come from: pick another path"
        )
    if not target.parent.is_dir():
        raise ValueError(f"export_gguf: the directory of path {str(path)!r} does not exist")
    if from_gguf:
        src = gguf_source(source)
        arch = arch_by_gguf(src.get("general.architecture"), f"general.architecture of {source.name}")
    else:  # a Hugging Face directory: convert_hf_to_gguf.py's keys and names, from the model itself
        src = hf_source(model, getattr(m, "tokenizer", None), source.name, tokenizer_pre)
        arch = arch_of_model(model)
    choices = resolve_types(model, recipe, include, exclude)
    ftype = file_type(recipe) if ftype is None else ftype
    if isinstance(imatrix, str | Path):
        from ...quantize.imatrix import load_imatrix

        imatrix = load_imatrix(imatrix)
    vectors = None if imatrix is None else module_vectors(model, imatrix)
    with atomic_path(target) as tmp:  # a failed or killed export leaves no half file at ``path``
        report = _write(model, tmp, recipe, choices, src, arch, ftype, vectors, imatrix)
    report.path = target
    report.file_bytes = target.stat().st_size
    report.seconds = time.perf_counter() - t0
    if report.fallbacks:
        names = ", ".join(f"{r.gguf_name} {r.requested}->{r.used}" for r in report.fallbacks[:4])
        more = f" (+{len(report.fallbacks) - 4} more)" if len(report.fallbacks) > 4 else ""
        warnings.warn(
            f"export_gguf: {len(report.fallbacks)} tensor(s) use llama.cpp's row-length fallback: "
            f"{names}{more}; see report.fallbacks",
            stacklevel=2,
        )
    return report


def _write(
    model: Any, path: Path, recipe: Any, choices: dict[str, Any], src: Source, family: Arch, ftype: int | None,
    vectors: dict[str, np.ndarray] | None = None, imatrix: Any = None,
) -> ExportReport:
    """Write the GGUF file at ``path`` (a temporary path that export_gguf renames)."""
    import gguf

    arch = family.gguf
    n_layers = int(src.get(f"{arch}.block_count"))
    n_head = int(src.get(f"{arch}.attention.head_count"))
    n_head_kv = int(src.get(f"{arch}.attention.head_count_kv", n_head))
    state = {k: v.detach() for k, v in model.state_dict().items()}
    to_gguf = gguf_name_map(state, arch, n_layers)
    from_gguf = {g: h for h, g in to_gguf.items()}
    writer = gguf.GGUFWriter(str(path), arch)
    _copy_metadata(src, writer)
    if ftype is not None:
        writer.add_file_type(int(ftype))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    label = recipe if recipe is None or isinstance(recipe, str) else dict(recipe)
    writer.add_string("qlab.recipe", json.dumps(label, default=str))  # provenance; llama.cpp ignores it
    if vectors is not None:  # the keys llama-quantize writes (gguf-py Keys.Quantize... / LLM_KV_QUANTIZE_IMATRIX_*)
        name = imatrix.dataset if isinstance(imatrix, IMatrix) else "mapping"
        writer.add_string("quantize.imatrix.file", "qlab")
        writer.add_string("quantize.imatrix.dataset", name)
        writer.add_int32("quantize.imatrix.entries_count", len(vectors))
        if isinstance(imatrix, IMatrix) and imatrix.chunk_count > 0:
            writer.add_int32("quantize.imatrix.chunks_count", int(imatrix.chunk_count))

    report = ExportReport(Path(path), recipe)
    for gname, shape in src.tensors:  # the source's tensor set and order
        hf = from_gguf.get(gname)
        if hf is None:
            raise ValueError(f"{gname} of {src.name} has no parameter in the model (names: {arch} map)")
        w = state[hf].to("cpu", copy=False).float().numpy()
        if tuple(w.shape) != shape:
            raise ValueError(f"{hf} has shape {tuple(w.shape)}, {gname} in {src.name} has {shape}")
        module = hf.rpartition(".")[0]
        keep = TensorChoice("f32", "f32")
        choice = choices.get(module, keep) if w.ndim == 2 else keep
        if family.permute_qk and ".attn_q." in gname:  # LLaMA only: GGML NORM rope (others NEOX)
            w = permute_qk(w, n_head)
        elif family.permute_qk and ".attn_k." in gname:
            w = permute_qk(w, n_head_kv)
        elif family.norm_offset and is_norm(gname):  # Gemma: GGUF stores 1 + w of x * (1 + w)
            w = w + np.float32(family.norm_offset)
        vec = None if vectors is None or choice.used in ("f32", "f16", "bf16") else vectors.get(module)
        try:
            data, raw_type = _encode(w, choice.used, vec)
        except ValueError as e:
            raise ValueError(f"export_gguf: tensor {gname} ({hf}, {choice.used}): {e}") from e
        writer.add_tensor(gname, data, raw_dtype=raw_type)
        report.rows.append(
            TensorRow(gname, hf, shape, choice.requested, choice.used, choice.reason, data.nbytes, choice.fallback)
        )
    missing = set(from_gguf) - {g for g, _ in src.tensors}
    if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        missing.discard("output.weight")  # tied: token_embd.weight is the output matrix
    if missing:
        raise ValueError(f"model parameters without a tensor in {src.name}: {sorted(missing)[:5]}")

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return report

