"""GPTQ (Frantar, Ashkboos, Hoefler, Alistarh, 2023, "GPTQ: Accurate Post-Training Quantization
for Generative Pre-trained Transformers", arXiv:2210.17323), onto qlab's integer grids.

For one Linear layer with weight ``W`` (``rows x cols``) and calibration inputs ``X`` it minimises
``||X W^T - X Q^T||^2`` one input column at a time (Optimal Brain Quantization): quantize column
``j``, then spread its rounding error over the columns not yet quantized, weighted by the inverse
Hessian ``H^-1`` of that quadratic loss, ``H = 2 X^T X / n``:

    err = (w_j - q_j) / [H^-1]_jj          W[:, j+1:] -= err * [H^-1]_{j, j+1:}

Algorithm 1 of the paper, as in the reference code (``IST-DASLab/gptq``, ``gptq.py``
``fasterquant``), which this module follows (it is re-implemented, not copied):

* damping ``H += damp * mean(diag H) * I`` (``percdamp``); dead inputs (``H_jj = 0``) get
  ``H_jj = 1`` and a zero weight column;
* the Cholesky factor (upper) of ``H^-1`` replaces ``H^-1`` (numerically stable, same updates);
* "lazy batch" updates: columns are processed in blocks of ``block_size``; inside a block the
  update touches the block only, the rest of ``W`` gets one GEMM ``Err @ U[block, rest]`` per block;
* ``act_order``: columns in order of decreasing ``diag(H)`` (the inputs with the largest
  activations first, while many columns remain to absorb their error);
* groups: a group's scale and zero-point are computed when the first of its columns is reached,
  from the weights *as updated so far* (the reference ``find_params`` on ``W``); with
  ``act_order`` the groups stay the contiguous column groups of the original order (the
  reference's ``static_groups``), so the result is stored by qlab's own group layout.

Grid: scale and zero-point of every group come from qlab's own integer quantizer
(:func:`qlab.formats.integer.qparams`, min-max rule) and a column is rounded exactly as
:mod:`qlab.formats.integer` does (``nearbyint(w * (1/s)) + z``, clamped, ``(q - z) * s`` in float32),
so the codes, scales and zero-points form an :class:`~qlab.formats.Encoded` of the integer format
that decodes bit-exactly to the new weights (:func:`encoded`): the reported bytes are real.

Rows are independent given ``H``, so layers fed the same input (``q/k/v_proj``, ``gate/up_proj``)
are quantized as one stacked matrix. Computation: float32 torch on CPU (the inverse Hessian in
float64). ``quantize_(m, GPTQConfig(...), calibration=text)`` runs it block by block over the LLM
(:mod:`qlab.quantize.blockwise`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import formats
from ..core.metrics import error_stats
from ..core.model import ModelLike
from ..formats import integer
from . import _layers as L
from . import blockwise as B
from ._report import LayerQuant, PipelineReport
from .llm_configs import GPTQConfig
from .recipes import Spec


@dataclass(frozen=True)
class IntGrid:
    """An integer weight format with its options: ``bits``, ``symmetric``, ``group_size``
    (``None`` = one scale per row) and the ``Spec`` that stores it."""

    spec: Spec
    bits: int
    symmetric: bool
    group_size: int | None

    @property
    def qrange(self) -> tuple[int, int]:
        return integer.qrange(self.bits, self.symmetric)


def int_grid(spec: Spec, method: str = "GPTQ") -> IntGrid:
    """The integer grid of ``spec``; other formats, per-tensor scales and stochastic rounding raise."""
    fmt = formats.get(spec)
    if fmt.family != "integer":
        raise ValueError(
            f"{method} rounds onto an affine integer grid (int2..int8); weights={fmt.name!r} is a "
            f"{fmt.family} format and is not supported"
        )
    o = fmt.options(**spec.options)
    if o["granularity"] == "tensor":
        raise ValueError(f"{method} needs per-channel or per-group scales; granularity='tensor' is not supported")
    if o["rounding"] != "nearest":
        raise ValueError(f"{method} rounds to nearest; rounding={o['rounding']!r} is not supported")
    return IntGrid(spec, fmt.bits, o["symmetric"], o["group_size"] if o["granularity"] == "group" else None)


def group_qparams(w: torch.Tensor, grid: IntGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero-point (float32, ``(rows, groups)``) of ``w`` ``(rows, groups, k)`` by qlab's
    integer quantizer (:func:`qlab.formats.integer.qparams`, the same numbers ``encode`` stores)."""
    rows, ng, k = w.shape
    s, z = integer.qparams(w.reshape(-1, k).numpy(), grid.bits, grid.symmetric)
    return torch.from_numpy(s).view(rows, ng), torch.from_numpy(z.astype(np.float32)).view(rows, ng)


def quantize_column(w: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, dequantized)`` of a vector with per-element ``scale``/``zp``, float32 throughout,
    rounded like :func:`qlab.formats.integer.quantize` (reciprocal first, half to even)."""
    inv = 1.0 / scale
    t = torch.where(torch.isfinite(inv), w * inv, w / scale)  # subnormal scales: divide (as qlab)
    q = torch.clamp(torch.round(t) + zp, qmin, qmax)
    return q, (q - zp) * scale


@dataclass
class GPTQResult:
    """Quantized weight ``(rows, cols)`` float32, its integer ``codes``, per-group ``scale`` and
    ``zero_point`` ``(rows, groups)``, and the column order used (``perm``)."""

    weight: torch.Tensor
    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    perm: torch.Tensor

    def rows(self, start: int, stop: int) -> GPTQResult:
        """The result of rows ``start:stop`` (one layer of a stacked q/k/v or gate/up matrix)."""
        sl = slice(start, stop)
        return GPTQResult(self.weight[sl], self.codes[sl], self.scale[sl], self.zero_point[sl], self.perm)


def prepare_hessian(h: torch.Tensor, w: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Damped ``H`` (float64) with dead inputs fixed, and ``W`` with their columns zeroed."""
    h = h.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w = w.clone()
    w[:, dead] = 0.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    return h, w


def gptq_quantize(
    w: torch.Tensor,
    h: torch.Tensor,
    grid: IntGrid,
    act_order: bool = False,
    damp: float = 0.01,
    block_size: int = 128,
) -> GPTQResult:
    """GPTQ of one weight matrix ``w`` ``(rows, cols)`` with Hessian ``h`` ``(cols, cols)`` (any
    positive multiple of ``X^T X``; see the module docstring)."""
    rows, cols = w.shape
    if h.shape != (cols, cols):
        raise ValueError(f"Hessian shape {tuple(h.shape)} does not match {cols} weight columns")
    gs = grid.group_size or cols
    if cols % gs:
        raise ValueError(f"group_size={gs} does not divide the row length {cols}")
    if not (bool(torch.isfinite(w).all()) and bool(torch.isfinite(h).all())):
        raise ValueError("GPTQ input has NaN/Inf values (weights or calibration activations)")
    qmin, qmax = grid.qrange
    hd, W = prepare_hessian(h, w.float(), damp)
    perm = torch.argsort(torch.diag(hd), descending=True, stable=True) if act_order else torch.arange(cols)
    invperm = torch.argsort(perm)
    W, hd = W[:, perm].contiguous(), hd[perm][:, perm]
    try:
        hinv = torch.cholesky_inverse(torch.linalg.cholesky(hd))
        U = torch.linalg.cholesky(hinv, upper=True).float()
    except torch.linalg.LinAlgError as e:
        raise ValueError(f"the calibration Hessian is not positive definite ({e}); raise damp") from None
    gidx = perm // gs  # scale group of each processed position (groups of the original order)
    ng = cols // gs
    # column-major work: row j of Wt is column j of W (contiguous per-column updates)
    Wt = W.T.contiguous()
    scale_t = torch.ones(ng, rows)
    zp_t = torch.zeros(ng, rows)
    have = torch.zeros(ng, dtype=torch.bool)
    codes_t = torch.empty(cols, rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of small ops: OpenMP hand-offs cost more than they save
    try:
        for i1 in range(0, cols, block_size):
            i2 = min(i1 + block_size, cols)
            g_new = torch.unique(gidx[i1:i2])
            g_new = g_new[~have[g_new]]
            if len(g_new):  # groups first reached in this block: min-max of their current weights
                cur = Wt[invperm].T.reshape(rows, ng, gs)[:, g_new]
                s_new, z_new = group_qparams(cur, grid)
                scale_t[g_new], zp_t[g_new] = s_new.T, z_new.T
                have[g_new] = True
            W1 = Wt[i1:i2].clone()
            Q1 = torch.empty_like(W1)
            Err1 = torch.empty_like(W1)
            U1 = U[i1:i2, i1:i2]
            for i in range(i2 - i1):
                g = int(gidx[i1 + i])
                col = W1[i]
                q, deq = quantize_column(col, scale_t[g], zp_t[g], qmin, qmax)
                codes_t[i1 + i] = q
                Q1[i] = deq
                err = (col - deq) / U1[i, i]
                W1[i:] -= torch.outer(U1[i, i:], err)
                Err1[i] = err
            Wt[i1:i2] = Q1
            Wt[i2:] -= U[i1:i2, i2:].T @ Err1
    finally:
        torch.set_num_threads(threads)
    W = Wt.T
    codes = codes_t.T
    scale, zp = scale_t.T.contiguous(), zp_t.T.contiguous()
    return GPTQResult(W[:, invperm].contiguous(), codes[:, invperm].contiguous(), scale, zp, perm)


def encoded(res: GPTQResult, grid: IntGrid) -> formats.Encoded:
    """The result as an :class:`~qlab.formats.Encoded` of the integer format (same parts, layout
    and ``nbytes`` as ``encode`` produces): ``formats.get(grid.spec).decode(enc)`` is ``res.weight``."""
    fmt = formats.get(grid.spec)
    opts = fmt.options(**grid.spec.options)
    shape = tuple(res.weight.shape)
    codes = res.codes.numpy().astype(np.int8 if grid.symmetric else np.uint8)
    parts = {"codes": codes.reshape(shape), "scale": res.scale.reshape(-1).numpy().astype(np.float32)}
    nbytes = -(-res.weight.numel() * grid.bits // 8) + 4 * parts["scale"].size
    if not grid.symmetric:
        parts["zero_point"] = res.zero_point.reshape(-1).numpy().astype(np.uint8)
        nbytes += parts["zero_point"].size
    return formats.Encoded(fmt.name, shape, parts, int(nbytes), dict(opts))


# -- whole model ---------------------------------------------------------------------------------
def select_layers(model: ModelLike, config: Any) -> tuple[str, Any, list[L.Layer]]:
    """``(blocks name, blocks, chosen layers)``: the decoder blocks' Linear layers filtered by the
    config's include/exclude (``lm_head`` and embeddings stay float, as in the papers)."""
    prefix, blocks = B.decoder_blocks(model)
    inside = [la for la in L.find_layers(model) if la.name.startswith(prefix + ".") and la.kind == "Linear"]
    chosen = {la.name for la in L.find_layers(model, config.include, config.exclude)}
    layers = [la for la in inside if la.name in chosen]
    if not layers:
        raise ValueError(f"include={config.include!r} / exclude={config.exclude!r} leave no Linear of {prefix} to quantize")
    for la in layers:
        if not bool(torch.isfinite(la.module.weight).all()):
            raise ValueError(f"{la.name}: weight has NaN/Inf values")
    return prefix, blocks, layers


def check_weight_only(config: Any, method: str) -> Spec:
    """The weight spec of a weight-only config; integers default to asymmetric (the papers' grid)."""
    if config.activations is not None:
        raise ValueError(f"{method} is weight-only; activations={config.activations!r} is not supported (use activations=None)")
    if config.weights is None:
        raise ValueError(f"{method} quantizes weights; weights=None leaves nothing to do")
    spec = config.weight_spec()
    if formats.get(spec).family == "integer" and "symmetric" not in spec.options:
        spec = Spec(str(spec), {**spec.options, "symmetric": False})
    return spec


def layer_row(la: L.Layer, orig: torch.Tensor, spec: Spec, nbytes: int, note: str) -> LayerQuant:
    st = error_stats(orig.numpy(), la.module.weight.detach().numpy())
    return L.layer_report(la, weights=spec.label(), activations="f32", nbytes=nbytes, sqnr_db=st["sqnr_db"],
                          mse=st["mse"], max_abs_err=st["max_abs_err"], note=note)  # fmt: skip


def run_gptq(model: ModelLike, config: GPTQConfig, calibration: Any = None, batch_size: int = 8) -> PipelineReport:
    """GPTQ on every decoder-block Linear of an LLM, calibrated on ``calibration`` text (what
    ``qlab.quantize_`` runs for a :class:`GPTQConfig`); weights replaced in place."""
    if not isinstance(config, GPTQConfig):
        raise TypeError(f"run_gptq takes a GPTQConfig, got {type(config).__name__}")
    from tqdm.auto import tqdm

    spec = check_weight_only(config, "GPTQ")
    grid = int_grid(spec)
    prefix, blocks, layers = select_layers(model, config)
    L.check_model(model)
    L.check_rows(layers, spec, None)
    ids = B.calibration_ids(model, calibration, config.n_samples, config.seq_len)
    t0 = time.perf_counter()
    by_name = {la.name: la for la in layers}
    rows: dict[str, LayerQuant] = {}
    inputs = B.first_block_inputs(model, ids, batch_size)
    last = max(int(n[len(prefix) + 1 :].split(".")[0]) for n in by_name)  # no need to run blocks after it
    for i, block in enumerate(tqdm(blocks[: last + 1], desc="GPTQ", disable=not config.progress, leave=False)):
        lin = B.linears(block, lambda n, i=i: f"{prefix}.{i}.{n}" in by_name)
        if lin:
            stats, _ = B.collect(block, lin, inputs)
            for group in B.sibling_groups(stats):
                mods = [lin[n] for n in group]
                w = torch.cat([m.weight.detach().float() for m in mods])
                res = gptq_quantize(w, stats[group[0]].gram, grid, config.act_order, config.damp, config.block_size)
                start = 0
                for n, m in zip(group, mods, strict=True):
                    la = by_name[f"{prefix}.{i}.{n}"]
                    part = res.rows(start, start + m.out_features)
                    start += m.out_features
                    orig = m.weight.detach().float().clone()
                    with torch.no_grad():
                        m.weight.copy_(part.weight.to(m.weight.dtype))
                    rows[la.name] = layer_row(la, orig, spec, encoded(part, grid).nbytes, "gptq")
        inputs = B.run_block(block, inputs)  # the quantized block feeds the next one
    seconds = time.perf_counter() - t0
    L.mark(model, config.label())
    extra = {"calibration_windows": int(ids.shape[0]), "seq_len": int(ids.shape[1]),
             "calibration_tokens": int(ids.numel()), "seconds": seconds}  # fmt: skip
    return PipelineReport(config.label(), [rows[la.name] for la in layers], L.other_params(model, layers),
                          config.to_dict(), extra)  # fmt: skip


def _register() -> None:
    from .api import register_method

    register_method(GPTQConfig, run_gptq)


_register()

__all__ = ["IntGrid", "int_grid", "group_qparams", "quantize_column", "GPTQResult", "gptq_quantize", "encoded", "run_gptq"]
