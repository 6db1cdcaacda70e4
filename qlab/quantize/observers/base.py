"""The observer interface and the min-max observers (Jacob et al., 2018, arXiv:1712.05877; PyTorch's
``MinMaxObserver`` / ``MovingAverageMinMaxObserver``); the registry is :mod:`qlab.quantize.observers`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..recipes import Spec, spec

GRANULARITIES = ("tensor", "channel")


def as_tensor(x: Any) -> torch.Tensor:
    """A detached float32 CPU tensor of ``x`` (numpy or torch, any float dtype)."""
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    return t.detach().to("cpu", torch.float32)


class Observer:
    """Base class: input checks, per-channel reshaping, ``range``/``qparams``."""

    name: ClassVar[str] = ""

    def __init__(self, granularity: str = "tensor", axis: int = 0) -> None:
        if granularity not in GRANULARITIES:
            raise ValueError(f"{self.name} observer: granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"{self.name} observer: axis must be an int, got {axis!r}")
        self.granularity, self.axis = granularity, axis
        self.n_batches = 0
        self.channels: int | None = None
        self.where = ""  #: set by pipelines to the layer name, so errors say where they happened

    # -- feeding -------------------------------------------------------------------------------
    def __call__(self, x: Any) -> Any:
        """Observe ``x`` and return it unchanged (so an observer can sit inside a forward pass)."""
        self.observe(x)
        return x

    def observe(self, x: Any) -> None:
        t = as_tensor(x)
        if t.numel() == 0:
            return
        rows = self._rows(t)
        lo, hi = torch.aminmax(rows, dim=1)  # NaN and Inf propagate: one cheap finiteness test
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            bad = int((~torch.isfinite(t)).sum())
            where = f" at {self.where}" if self.where else ""
            raise ValueError(
                f"{self.name} observer{where}: batch {self.n_batches} has {bad} NaN/Inf value(s) "
                f"among {t.numel()}; calibration data (or the model's activations) must be finite"
            )
        self._update(rows, lo, hi)
        self.n_batches += 1

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as (channels, values): one row per tensor or per index of ``axis``."""
        if self.granularity == "tensor":
            return t.reshape(1, -1)
        if t.ndim == 0 or not -t.ndim <= self.axis < t.ndim:
            raise ValueError(f"{self.name} observer: axis {self.axis} out of range for shape {tuple(t.shape)}")
        rows = t.movedim(self.axis, 0).reshape(t.shape[self.axis], -1)
        if self.channels is not None and rows.shape[0] != self.channels:
            raise ValueError(f"{self.name} observer: {rows.shape[0]} channels, earlier batches had {self.channels}")
        self.channels = rows.shape[0]
        return rows

    def _update(self, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Add a batch: ``rows`` (channels, values) and its per-channel min ``lo`` / max ``hi``."""
        raise NotImplementedError

    # -- results -------------------------------------------------------------------------------
    def range(self, fmt: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` float32, shape ``()`` per tensor or ``(channels,)`` per channel. ``fmt``: the
        target format (``"int8"``, ``Spec``, ``(name, options)``), used by ``mse`` and ``entropy``."""
        if self.n_batches == 0:
            where = f" at {self.where}" if self.where else ""
            raise ValueError(f"{self.name} observer{where} has seen no data: calibrate with at least one non-empty batch")
        s = None if fmt is None else _spec(fmt)
        # the searches of mse/entropy cost up to a second: qparams() after range() must not redo them
        # (keyed by the batches seen, the scalar settings -- percentile, bins, ... -- and the format)
        settings = tuple(sorted((k, v) for k, v in vars(self).items() if isinstance(v, (bool, int, float, str))))
        key = (settings, None if s is None else (str(s), repr(sorted(s.options.items()))))
        if getattr(self, "_range_memo", (None,))[0] != key:
            lo, hi = self._range(s)
            self._range_memo = (key, np.asarray(lo, np.float32), np.asarray(hi, np.float32))
        lo, hi = self._range_memo[1].copy(), self._range_memo[2].copy()
        return (lo.reshape(()), hi.reshape(())) if self.granularity == "tensor" else (lo, hi)

    def _range(self, fmt: Spec | None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def qparams(self, fmt: Any = "int8", **options: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(scale float32, zero_point int32)`` of ``fmt`` for the observed range (the format's own
        rule: :func:`qlab.formats.integer.qparams`, :func:`qlab.formats.minifloat.absmax_scales`)."""
        from ..fakequant import RangeQuantizer

        s = _spec(fmt, options)
        lo, hi = self.range(s)
        q = RangeQuantizer(s, lo.ravel(), hi.ravel(), None if self.granularity == "tensor" else 0)
        shape = () if self.granularity == "tensor" else (-1,)
        return q.scale.reshape(shape), q.zero_point.reshape(shape)

    def __repr__(self) -> str:
        gran = self.granularity if self.granularity == "tensor" else f"channel, axis={self.axis}"
        return f"<{self.name} observer ({gran}), {self.n_batches} batch(es)>"


def _spec(fmt: Any, options: dict[str, Any] | None = None) -> Spec:
    s = spec(fmt)
    return Spec(s, {**s.options, **(options or {})}) if options else s


class MinMaxObserver(Observer):
    """Running minimum and maximum (PyTorch ``MinMaxObserver`` / ``PerChannelMinMaxObserver``)."""

    name = "minmax"

    def _update(self, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self.n_batches == 0:
            self.lo, self.hi = lo, hi
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)

    def _range(self, fmt: Spec | None) -> tuple[np.ndarray, np.ndarray]:
        return self.lo.numpy(), self.hi.numpy()


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of the batch min/max: the first batch sets them, then
    ``m <- m + c * (batch_m - m)`` in float32, as PyTorch's ``MovingAverage(PerChannel)MinMaxObserver``."""

    name = "moving_average"

    def __init__(self, granularity: str = "tensor", axis: int = 0, averaging_constant: float = 0.01) -> None:
        super().__init__(granularity, axis)
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"moving_average observer: averaging_constant must be in (0, 1], got {averaging_constant!r}")
        self.c = averaging_constant

    def _update(self, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self.n_batches == 0:
            self.lo, self.hi = lo, hi
        else:
            self.lo = self.lo + self.c * (lo - self.lo)
            self.hi = self.hi + self.c * (hi - self.hi)
