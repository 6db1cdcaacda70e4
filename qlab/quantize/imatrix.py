"""Importance matrices: what llama.cpp's ``llama-imatrix`` collects, and its GGUF file format.

For every weight matrix ``W`` (``rows x cols``) that a causal LM multiplies with its input ``x``,
the importance of input column ``j`` is the mean over calibration tokens of ``x_j**2``. ggml-quants.c
weighs each column's squared rounding error by it when it searches a block's scale (the
``quant_weights`` of ``ggml_quantize_chunk``), so the columns the model actually drives get the
smallest errors. This module follows ``tools/imatrix/imatrix.cpp`` (``IMatrixCollector``):

* **which tensors**: every matrix multiplication whose weight is a ``blk.*`` tensor (the output
  matrix only with ``--process-output``; never ``token_embd``, which is a row lookup). Names are
  the GGUF tensor names (``blk.0.attn_q.weight``), not transformers' module names;
  :func:`gguf_name_map` translates (gguf-py's ``TensorNameMap``, as the GGUF exporter does).
  Q/K rows are permuted between the two layouts, columns never are: the vector is the same.
* **what is summed**: ``in_sum2[j] += x_j**2`` over every token row, ``counts += 1`` per row, one
  count per dense tensor (the ``MUL_MAT`` branch). Merged-expert (MoE) tensors keep one row of
  sums and one count per expert (``in_sum2`` is ``(n_expert, cols)``, ``counts`` ``(n_expert,)``);
  a file's such entries are read and written as they are (qlab collects dense models only).
  llama.cpp ignores batches of fewer than 16 tokens, hence ``window >= 16`` here.
* **the file** (``save_imatrix``, GGUF since 2025): ``general.type = "imatrix"``, ``imatrix.datasets``
  (array of str), ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (u32); per tensor ``NAME.in_sum2``
  (F32, ggml shape ``[cols, n_mat]``) and ``NAME.counts`` (F32, ``[1, n_mat]``). ``llama-quantize``
  uses ``in_sum2 / counts`` (and 1 where a count is 0); it requires the three ``imatrix.*`` keys.
  Newer writers add ``NAME.in_sum`` (sum of ``x``); it is ignored here as by ``llama-quantize``.

Calibration: non-overlapping windows of ``window`` tokens of :func:`qlab.eval.calibration_text`
(held-out WikiText-2, never the evaluation text), no BOS (qlab's perplexity protocol), one chunk
per window.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.model import ModelLike, torch_module
from ..files import atomic_path

__all__ = ["IMatrix", "check_imatrix_arg", "collect_imatrix", "gguf_name_map", "load_imatrix", "module_vectors", "save_imatrix"]

KEY_DATASETS = "imatrix.datasets"
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"
MIN_TOKENS = 16  # imatrix.cpp: "why are small batches ignored (<16 tokens)?"


@dataclass
class IMatrix:
    """An importance matrix: per GGUF tensor name the sums of ``x**2`` (``(n_mat, cols)`` float32,
    ``n_mat`` = 1 for dense tensors) and the token counts (``(n_mat,)``), plus the file metadata."""

    sums: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    chunk_count: int = 0
    chunk_size: int = 0
    datasets: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sums.keys() != self.counts.keys():
            raise ValueError(f"sums and counts must name the same tensors; differ in {sorted(self.sums.keys() ^ self.counts.keys())[:4]}")
        for name, s in self.sums.items():
            c = self.counts[name]
            if s.ndim != 2 or c.shape != (s.shape[0],):
                raise ValueError(f"{name}: sums must be (n_mat, cols) and counts (n_mat,); got {s.shape} and {c.shape}")

    def __contains__(self, name: object) -> bool:
        return name in self.sums

    def __len__(self) -> int:
        return len(self.sums)

    def names(self) -> list[str]:
        return sorted(self.sums)

    def vector(self, name: str) -> np.ndarray:
        """``in_sum2 / counts`` of tensor ``name`` as ``llama-quantize`` computes it (float32; an
        expert with count 0 gets 1s): ``(cols,)`` for a dense tensor, ``(n_mat, cols)`` otherwise."""
        if name not in self.sums:
            raise KeyError(f"imatrix has no tensor {name!r} (it has {len(self.sums)}, e.g. {self.names()[:3]})")
        s, c = self.sums[name], self.counts[name].astype(np.float32)
        out = np.ones_like(s, dtype=np.float32)
        live = c > 0
        out[live] = s[live] / c[live, None]
        return out[0] if out.shape[0] == 1 else out

    def vectors(self) -> dict[str, np.ndarray]:
        return {n: self.vector(n) for n in self.names()}

    @property
    def dataset(self) -> str:
        return self.datasets[-1] if self.datasets else ""

    def save(self, path: str | os.PathLike[str]) -> Path:
        return save_imatrix(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IMatrix:
        return load_imatrix(path)


# -- names --------------------------------------------------------------------------------------
def gguf_name_map(hf_names: Iterable[str], arch: str, n_layers: int) -> dict[str, str]:
    """``{HF parameter name: GGUF tensor name}`` through gguf-py's ``TensorNameMap``
    (``model.layers.0.self_attn.q_proj.weight`` -> ``blk.0.attn_q.weight``); unknown names are left out."""
    import gguf

    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        raise ValueError(f"gguf-py does not know the architecture {arch!r}")
    tmap = gguf.get_tensor_name_map(arch_id, n_layers)
    out = {}
    for name in hf_names:
        base, dot, suffix = name.rpartition(".")
        mapped = tmap.get_name(base) if suffix in ("weight", "bias") else None
        if mapped is not None:
            out[name] = f"{mapped}{dot}{suffix}"
    return out


def _module_gguf_names(mod: torch.nn.Module) -> dict[str, str]:
    """``{module name: GGUF weight name}`` for every Linear of a transformers causal LM."""
    cfg = getattr(mod, "config", None)
    arch, n_layers = getattr(cfg, "model_type", None), getattr(cfg, "num_hidden_layers", None)
    if not isinstance(arch, str) or not isinstance(n_layers, int):
        raise ValueError("an importance matrix needs a transformers causal LM (config.model_type and num_hidden_layers)")
    names = [f"{n}.weight" for n, m in mod.named_modules() if isinstance(m, torch.nn.Linear)]
    return {h.removesuffix(".weight"): g for h, g in gguf_name_map(names, arch, n_layers).items()}


def check_imatrix_arg(imatrix: Any) -> None:
    """``imatrix`` is ``None``, an :class:`IMatrix`, an existing file path or a mapping (else ValueError)."""
    if imatrix is None or isinstance(imatrix, IMatrix | Mapping):
        return
    if isinstance(imatrix, str | os.PathLike):
        if not Path(imatrix).is_file():
            raise ValueError(f"imatrix: {str(imatrix)!r} is not a file (give an imatrix .gguf path, an IMatrix or a mapping)")
        return
    raise ValueError(f"imatrix must be None, an IMatrix, an imatrix .gguf path or a mapping name -> vector, got {type(imatrix).__name__}")


def module_vectors(model: ModelLike, imatrix: IMatrix | Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``{module name: importance vector}`` for ``model``'s weights from ``imatrix``: an
    :class:`IMatrix`, the path of an imatrix GGUF file, or a mapping of GGUF tensor names
    (``blk.0.attn_q.weight``) or module names (``model.layers.0.self_attn.q_proj``) to vectors.
    Every entry must name a weight of the model (a typo must not pass silently)."""
    mod = torch_module(model)
    if isinstance(imatrix, str | os.PathLike):
        imatrix = load_imatrix(imatrix)
    if isinstance(imatrix, IMatrix):
        vectors: Mapping[str, Any] = imatrix.vectors()
    elif isinstance(imatrix, Mapping):
        vectors = imatrix
    else:
        raise ValueError(f"imatrix must be an IMatrix, an imatrix .gguf path or a mapping name -> vector, got {type(imatrix).__name__}")
    to_gguf = _module_gguf_names(mod)
    from_gguf = {g: h for h, g in to_gguf.items()}
    out, unknown = {}, []
    for name, v in vectors.items():
        module = from_gguf.get(name, name if name in to_gguf else None)
        if module is None:
            unknown.append(name)
            continue
        out[module] = np.asarray(v, dtype=np.float32) if not isinstance(v, np.ndarray) else v
    if unknown:
        raise ValueError(
            f"imatrix: {len(unknown)} entr(y/ies) name no Linear weight of the model, e.g. {unknown[:3]}; "
            f"valid: GGUF names such as {next(iter(from_gguf), '?')!r} or module names such as {next(iter(to_gguf), '?')!r}"
        )
    return out


# -- collecting ---------------------------------------------------------------------------------
def collect_imatrix(
    m: ModelLike,
    text: str | None = None,
    *,
    window: int = 512,
    windows: int = 32,
    dataset: str | None = None,
    process_output: bool = False,
    progress: bool = True,
) -> IMatrix:
    """The importance matrix of causal LM ``m`` (a :func:`qlab.models.load` result) over
    ``windows`` windows of ``window`` tokens of ``text`` (default :func:`qlab.eval.calibration_text`).

    Hooks on every ``blk.*`` Linear (and the output matrix when ``process_output``, as
    ``llama-imatrix --process-output``; a tied one is ``token_embd`` in llama.cpp and is never collected) add ``x**2`` of each input row (float64 sums, stored float32
    like llama.cpp's ``float`` sums) and count the rows. ``dataset`` names the text in the file
    (``imatrix.datasets``).
    """
    from tqdm.auto import tqdm

    from ..core.lm import first_tokens
    from ..core.text import calibration_text

    if not isinstance(window, int) or window < MIN_TOKENS:
        raise ValueError(f"window must be an int >= {MIN_TOKENS} (llama-imatrix ignores batches of fewer tokens), got {window!r}")
    if not isinstance(windows, int) or windows < 1:
        raise ValueError(f"windows must be a positive int, got {windows!r}")
    if text is None:
        text, dataset = calibration_text(), dataset or "qlab.eval.calibration_text()"
    mod = torch_module(m)
    tied = bool(getattr(getattr(mod, "config", None), "tie_word_embeddings", False))
    wanted = {"output.weight"} if process_output and not tied else set()  # tied: llama.cpp multiplies token_embd
    names = {h: g for h, g in _module_gguf_names(mod).items() if g.startswith("blk.") or g in wanted}
    if not names:
        raise ValueError("the model has no blk.* Linear weight to collect an importance matrix for")
    tok = getattr(m, "tokenizer", None)
    if tok is None:
        raise ValueError("collect_imatrix needs a causal LM with a tokenizer (a qlab.models.load() result)")
    first = first_tokens(tok, text, window * windows)  # no special tokens: no BOS
    if len(first) < window * windows:
        raise ValueError(f"text has {len(first)} tokens, fewer than windows * window = {windows} * {window}")
    ids = torch.tensor(first, dtype=torch.int64).view(windows, window)
    modules = dict(mod.named_modules())
    sums = {g: torch.zeros(modules[h].in_features, dtype=torch.float64) for h, g in names.items()}
    counts = dict.fromkeys(names.values(), 0)

    def hook(gname: str) -> Any:
        def add(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            sums[gname] += x.double().square().sum(0)
            counts[gname] += x.shape[0]

        return add

    handles = [modules[h].register_forward_pre_hook(hook(g)) for h, g in names.items()]
    was = mod.training
    mod.eval()
    try:
        with torch.inference_mode():
            for row in tqdm(ids, desc="imatrix", disable=not progress, leave=False):
                mod(input_ids=row[None])
    finally:
        for h in handles:
            h.remove()
        mod.train(was)
    return IMatrix(
        {g: s.float().numpy()[None] for g, s in sums.items()},
        {g: np.array([c], dtype=np.float32) for g, c in counts.items()},
        chunk_count=int(ids.shape[0]),
        chunk_size=window,
        datasets=(dataset or "text",),
    )


# -- the file -----------------------------------------------------------------------------------
def save_imatrix(imx: IMatrix, path: str | os.PathLike[str]) -> Path:
    """Write ``imx`` as llama.cpp's GGUF imatrix file (``llama-imatrix -o x.gguf``), atomically;
    tensors in sorted name order, as ``IMatrixCollector::save_imatrix``. Returns the path."""
    import gguf

    if not isinstance(imx, IMatrix) or not len(imx):
        raise ValueError(f"save_imatrix needs a non-empty IMatrix, got {imx!r:.80}")
    target = Path(path)
    if not target.parent.is_dir():
        raise ValueError(f"save_imatrix: the directory of path {str(path)!r} does not exist")
    with atomic_path(target) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch="")
        w.kv_data[0].pop("general.architecture", None)  # llama-imatrix writes no architecture
        w.add_string("general.type", "imatrix")
        w.add_array(KEY_DATASETS, list(imx.datasets))
        w.add_uint32(KEY_CHUNK_COUNT, int(imx.chunk_count))
        w.add_uint32(KEY_CHUNK_SIZE, int(imx.chunk_size))
        for name in imx.names():
            s = np.ascontiguousarray(imx.sums[name], dtype=np.float32)
            c = np.ascontiguousarray(imx.counts[name], dtype=np.float32).reshape(-1, 1)
            w.add_tensor(f"{name}.in_sum2", s)  # numpy (n_mat, cols) = ggml ne [cols, n_mat]
            w.add_tensor(f"{name}.counts", c)  # numpy (n_mat, 1) = ggml ne [1, n_mat]
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return target


def load_imatrix(path: str | os.PathLike[str]) -> IMatrix:
    """Read a GGUF imatrix file (``llama-imatrix``'s or :func:`save_imatrix`'s). Like
    ``llama-quantize`` it requires the ``imatrix.datasets/chunk_count/chunk_size`` keys and an
    ``.in_sum2`` with a ``.counts`` for every tensor; other tensors (``.in_sum``) are ignored."""
    import gguf

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"load_imatrix: {str(path)!r} is not a file")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(
            f"load_imatrix: {p.name} is not a GGUF file (the legacy .dat imatrix format is not read; "
            f"convert it with `llama-imatrix --in-file {p.name} -o {p.stem}.gguf`)"
        )
    r = gguf.GGUFReader(p)
    fields = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    kind = fields.get("general.type")
    if kind is not None and kind != "imatrix":
        raise ValueError(f"load_imatrix: {p.name} has general.type={kind!r}, not 'imatrix' (a model file?)")
    missing = [k for k in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE) if k not in fields]
    if missing:
        raise ValueError(f"load_imatrix: {p.name} lacks the imatrix metadata {missing} (llama-quantize rejects it too)")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in r.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ValueError(f"load_imatrix: tensor {t.name} is {t.tensor_type.name}, imatrix tensors are F32")
        ne = [int(d) for d in t.shape]  # ggml order
        data = np.array(t.data, dtype=np.float32).reshape(-1)
        if t.name.endswith(".in_sum2"):
            sums[t.name.removesuffix(".in_sum2")] = data.reshape(ne[1] if len(ne) > 1 else 1, ne[0])
        elif t.name.endswith(".counts"):
            counts[t.name.removesuffix(".counts")] = data
    bad = sorted(sums.keys() ^ counts.keys())
    if bad:
        raise ValueError(f"load_imatrix: mismatched sums and counts for {bad[:4]} in {p.name}")
    if not sums:
        raise ValueError(f"load_imatrix: no data in file {p.name}")
    ds = fields[KEY_DATASETS]
    return IMatrix(
        sums, counts, int(fields[KEY_CHUNK_COUNT]), int(fields[KEY_CHUNK_SIZE]),
        tuple([ds] if isinstance(ds, str) else ds),
        {k: v for k, v in fields.items() if k not in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE)},
    )  # fmt: skip
