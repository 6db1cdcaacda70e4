"""Quantization-aware training: fake quantization in the forward pass, straight-through gradients.

``qlab.quantize_(m, QATConfig(weights="int2", activations="int2", distill=True), calibration=(x, y))``
fine-tunes a float model with its quantizers in the loop, then converts it (weights replaced by
their quantized values, activation quantizers frozen). ``calibration`` is the training data:
``(x, y)`` tensors, a list of ``(x, y)`` batches, or inputs alone with ``distill=True``; for
``digits-cnn`` it defaults to the training split.

* ``method="lsq"`` -- Learned Step Size Quantization (Esser et al., ICLR 2020, arXiv:1902.08153):
  ``v_hat = round(clamp(v / s, -Qn, Qp)) * s`` with the step ``s`` a parameter, the gradient of
  ``round`` passed straight through, and ``s``'s gradient scaled by ``g = 1 / sqrt(N * Qp)``
  (``N``: values per step). Init ``s = 2 mean|v| / sqrt(Qp)`` (weights per output channel; each
  activation per tensor, from the first batch). Weights use qlab's symmetric integer grid
  (``Qn = Qp = 2**(b-1) - 1``, int2 = {-1, 0, 1}); activations the unsigned grid ``[0, 2**b - 1]``
  when the first batch is non-negative (after ReLU), the symmetric one otherwise. ``v / s`` is
  computed as ``v * (1 / s)`` in float32, as ``torch.fake_quantize_*`` and :mod:`qlab.formats.integer`
  do, so the trained grid is exactly the one the converted model uses.
* ``method="ste"`` -- the format's own scale rule on every step (any format of :mod:`qlab.formats`)
  and moving-average min-max activation ranges (as PyTorch's ``FakeQuantize``), with the
  straight-through estimator (Bengio et al., 2013, arXiv:1308.3432).

``distill=True``: knowledge distillation from the float model (Hinton et al., 2015,
arXiv:1503.02531) -- KL divergence between temperature-softened logits, mixed with the
cross-entropy on the labels by ``distill_weight``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .. import formats
from ..core.metrics import error_stats
from ..core.model import ModelLike
from . import _layers as L
from ._report import PipelineReport
from .calibration import run
from .configs import QATConfig
from .fakequant import RangeQuantizer, RoundtripQuantizer, int_grid, kind, quantizer
from .recipes import Spec, torch_module


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (torch.round(x) - x).detach() + x  # torch.round: half to even, as nearbyint


def _grad_scale(s: torch.Tensor, g: float) -> torch.Tensor:
    return (s - s * g).detach() + s * g  # value s, gradient g * ds


class LSQ(nn.Module):
    """A learned-step-size quantizer; one step per tensor, or per index of axis 0 (``channels``)."""

    def __init__(self, qn: int, qp: int, channels: int = 1, per_sample: bool = False) -> None:
        super().__init__()
        self.qn, self.qp, self.per_sample = qn, qp, per_sample
        self.step = nn.Parameter(torch.ones(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def init_from(self, v: torch.Tensor) -> None:
        rows = v.detach().reshape(self.step.numel(), -1) if self.step.numel() > 1 else v.detach().reshape(1, -1)
        s = 2 * rows.abs().mean(dim=1) / math.sqrt(self.qp)
        with torch.no_grad():
            self.step.copy_(torch.where(s > 0, s, torch.ones_like(s)))
            self.initialized.fill_(True)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if not bool(self.initialized):
            self.init_from(v)
        # N of the gradient scale: values per step (weights), features per sample (activations)
        per = v[0].numel() if self.per_sample and v.ndim > 1 else v.numel() // self.step.numel()
        s = _grad_scale(self.step, 1.0 / math.sqrt(per * self.qp))
        s = s.reshape(-1, *([1] * (v.ndim - 1))) if self.step.numel() > 1 else s.reshape(())
        return _round_ste(torch.clamp(v * (1.0 / s), -self.qn, self.qp)) * s


class LSQInput(LSQ):
    """LSQ for a layer input: unsigned grid if the first batch is non-negative."""

    def __init__(self, bits: int) -> None:
        super().__init__(2 ** (bits - 1) - 1, 2 ** (bits - 1) - 1, per_sample=True)
        self.bits = bits

    def init_from(self, v: torch.Tensor) -> None:
        if bool((v >= 0).all()):
            self.qn, self.qp = 0, 2**self.bits - 1
        super().init_from(v)

    def frozen(self) -> Any:
        """The converted quantizer: torch's fake quantization with the learned step (qlab's int grid)."""
        s, qn, qp = float(self.step.detach()[0]), int(self.qn), int(self.qp)
        return lambda x: torch.fake_quantize_per_tensor_affine(x, s, 0, -qn, qp)


class STEWeight(nn.Module):
    """Weight fake quantization with the format's own rule (rows = output channels), STE gradient."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        rows = w.reshape(w.shape[0], -1)
        if kind(self.spec) == "ranged":
            per_channel = formats.get(self.spec).options(**self.spec.options)["granularity"] == "channel"
            lo, hi = torch.aminmax(rows.detach(), dim=1) if per_channel else torch.aminmax(rows.detach())
            q = RangeQuantizer(self.spec, lo.numpy(), hi.numpy(), axis=0 if per_channel else None)(rows)
        else:
            q = RoundtripQuantizer(self.spec, -1)(rows)
        return q.reshape(w.shape)


class STEInput(nn.Module):
    """Activation fake quantization with a moving-average min-max range (PyTorch ``FakeQuantize``)."""

    def __init__(self, spec: Spec, channel_axis: int, averaging_constant: float = 0.01) -> None:
        super().__init__()
        self.spec, self.axis, self.c = spec, channel_axis, averaging_constant
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not torch.isfinite(self.lo):
            lo, hi = torch.aminmax(x.detach())
            first = not torch.isfinite(self.lo)
            self.lo.copy_(lo if first else self.lo + self.c * (lo - self.lo))
            self.hi.copy_(hi if first else self.hi + self.c * (hi - self.hi))
        return self.frozen()(x)

    def frozen(self) -> Any:
        return quantizer(self.spec, self.lo.item(), self.hi.item(), row_axis=self.axis)


def _training_data(model: ModelLike, data: Any) -> list[tuple[Any, torch.Tensor | None]]:
    if data is None:
        if getattr(model, "name", "") == "digits-cnn":
            from ..models.digits import load_split

            data = load_split("train")
        else:
            raise ValueError("QAT needs training data: calibration=(x, y), a list of (x, y) batches, or inputs with distill=True")
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [(data[0], data[1])]
    if isinstance(data, torch.Tensor):
        return [(data, None)]
    out = [(b[0], b[1]) if isinstance(b, tuple | list) and len(b) == 2 else (b, None) for b in data]
    if not out:
        raise ValueError("QAT training data has no batches")
    return out


def _batches(data: list[tuple[Any, Any]], bs: int, gen: torch.Generator) -> list[tuple[Any, Any]]:
    """One epoch: a single (x, y) pair is shuffled and split; a list of batches is used as is, shuffled."""
    if len(data) == 1 and isinstance(data[0][0], torch.Tensor):
        x, y = data[0]
        idx = torch.randperm(len(x), generator=gen).split(bs)
        return [(x[i], None if y is None else y[i]) for i in idx]
    return [data[i] for i in torch.randperm(len(data), generator=gen).tolist()]


def _logits(out: Any) -> torch.Tensor:
    t = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"QAT needs a model that returns logits (a tensor or .logits); got {type(out).__name__}")
    return t


def _loss(logits: torch.Tensor, y: Any, teacher: Any, x: Any, cfg: QATConfig) -> torch.Tensor:
    terms = []
    if y is not None:
        terms.append((1 - cfg.distill_weight if teacher is not None else 1.0, F.cross_entropy(logits, y)))
    if teacher is not None:
        with torch.no_grad():
            t = _logits(run(teacher, x)) / cfg.temperature
        kd = F.kl_div(F.log_softmax(logits / cfg.temperature, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
        terms.append((cfg.distill_weight if y is not None else 1.0, kd * cfg.temperature**2))
    if not terms:
        raise ValueError("QAT training data have no labels: give (x, y) pairs or set distill=True")
    return sum(w * t for w, t in terms)


def quantize_qat(model: ModelLike, config: QATConfig, calibration: Any = None) -> PipelineReport:
    """Attach fake quantizers, train, convert (what ``qlab.quantize_`` runs for a QATConfig)."""
    L.check_model(model)
    mod = torch_module(model)
    wspec = config.weight_spec()
    aspec = config.activation_spec() if config.activations else None
    layers = L.find_layers(model, config.include, config.exclude)
    L.check_rows(layers, wspec, aspec)
    data = _training_data(model, calibration)
    if not config.distill and any(y is None for _, y in data):  # fail before the model changes
        raise ValueError("QAT training data have no labels: give (x, y) pairs or set distill=True")
    torch.manual_seed(config.seed)
    teacher = copy.deepcopy(mod).eval() if config.distill else None
    latent, inputs = {}, {}
    for la in layers:
        m = la.module
        if config.method == "lsq":
            qmin, qmax, _ = int_grid(wspec)
            wq: nn.Module = LSQ(-qmin, qmax, m.weight.shape[0] if wspec.options.get("granularity", "channel") == "channel" else 1)
            wq.init_from(m.weight)
        else:
            wq = STEWeight(wspec)
        parametrize.register_parametrization(m, "weight", wq)
        if aspec is not None:
            aq = LSQInput(formats.get(aspec).bits) if config.method == "lsq" else STEInput(aspec, la.channel_axis)
            m.add_module("qlab_input_quantizer", aq)
            L.set_input_hook(la, "quantize", aq)
    history = _train(mod, data, config, teacher)
    rows = []
    for la in layers:  # convert: quantized weights stay, activation quantizers freeze
        m = la.module
        latent[la.name] = formats.base.as_float32(m.parametrizations.weight.original.detach()).copy()
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        y = formats.base.as_float32(m.weight.detach())
        nbytes = formats.get(wspec).encode(y.reshape(y.shape[0], -1), **wspec.options).nbytes  # storage, from the shape
        if aspec is not None:
            aq = m.qlab_input_quantizer
            del m.qlab_input_quantizer
            inputs[la.name] = aq
            L.set_input_hook(la, "quantize", L.quantizing_hook(la, aq.frozen(), {}))
        st = error_stats(latent[la.name], y)
        rows.append(L.layer_report(
            la, weights=f"{wspec.label()} ({config.method})", nbytes=int(nbytes), sqnr_db=st["sqnr_db"],
            mse=st["mse"], max_abs_err=st["max_abs_err"], activations=aspec.label() if aspec else "f32",
            observer="lsq step" if config.method == "lsq" and aspec else "moving_average" if aspec else "",
            note="SQNR vs the trained float weights",
        ))  # fmt: skip
        if config.method == "lsq" and aspec is not None:
            aq = inputs[la.name]
            step = float(aq.step.detach()[0])
            rows[-1].act_lo, rows[-1].act_hi = (0.0 if aq.qn == 0 else -aq.qn * step), aq.qp * step
    mod.eval()
    L.mark(model, config.label())
    extra = {"loss_per_epoch": history, "distill": config.distill, "method": config.method}
    return PipelineReport(config.label(), rows, L.other_params(model, layers), config.to_dict(), extra)


def _train(mod: nn.Module, data: list[tuple[Any, Any]], cfg: QATConfig, teacher: Any) -> list[float]:
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(cfg.seed)
    mod.train()
    with torch.no_grad():  # initialise LSQ activation steps / STE ranges from the first batch
        run(mod, _batches(data, cfg.batch_size, torch.Generator().manual_seed(cfg.seed))[0][0])
    opt = torch.optim.Adam(mod.parameters(), lr=cfg.lr)
    steps = cfg.epochs * len(_batches(data, cfg.batch_size, torch.Generator().manual_seed(0)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    history = []
    for _ in tqdm(range(cfg.epochs), desc="QAT", disable=not cfg.progress, leave=False):
        total, n = 0.0, 0
        for x, y in _batches(data, cfg.batch_size, gen):
            opt.zero_grad()
            loss = _loss(_logits(run(mod, x)), y, teacher, x, cfg)
            if not torch.isfinite(loss):
                raise ValueError("QAT loss became NaN/Inf; lower lr or check the data")
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()), n + 1
        history.append(total / max(n, 1))
    return history


def _register() -> None:
    from .api import register_method

    register_method(QATConfig, quantize_qat)


_register()

__all__ = ["LSQ", "LSQInput", "STEWeight", "STEInput", "quantize_qat"]
