"""Histogram observers: percentile, MSE-optimal clipping and entropy (KL) calibration.

All three collect the statistics of NVIDIA's pytorch-quantization ``HistogramCalibrator`` (and
ONNX Runtime's symmetric histogram collector): a histogram of ``|x|`` with ``bins`` (2048) equal
bins on ``[0, top]`` -- kept separately for negative and non-negative values, so that the MSE
search can score asymmetric ranges -- plus the exact min and max. ``top`` is the first batch's ``max |x|``;
when a later batch exceeds it, pairs of bins are merged and ``top`` doubles until it fits -- an
exact re-binning (edges stay aligned, no counts are redistributed), unlike growing the bin
count. Per channel, each channel has its own histogram and ``top``.

A clipping magnitude ``a`` becomes the range ``[max(min, -a), min(max, a)]``: signed data gets a
symmetric range, non-negative data (after ReLU) ``[min, a]``.

* ``percentile``: ``a`` with ``P(|x| <= a) = p / 100``, linear inside the bin where the CDF
  crosses (``np.percentile`` of |x| to within one bin width).
* ``mse``: ``a`` = the bin centre ``c_i`` (``i >= start_bin``) minimising
  ``sum_b count_b * (Q_a(v_b) - v_b)**2`` over the bin centres ``v_b = +-c_b``, where ``Q_a`` is
  the *target format's* quantizer for the range ``a`` gives (pytorch-quantization
  ``_compute_amax_mse``, there for symmetric integers only).
* ``entropy``: TensorRT's KL search (``_compute_amax_entropy``): for each ``i >= start_bin``, P =
  the first ``i`` bins with the outliers added to the last, Q = those bins merged into ``nq``
  quantization bins and spread back uniformly over the non-empty source bins; ``a`` = the upper
  edge of bin ``i`` with the least KL(P || Q) (the last one on ties). ``nq = 2**(bits - 1)``, or
  ``2**bits`` for non-negative data. As in TensorRT the zero bin's count is replaced by bin 1's
  (the spike of exact zeros after ReLU would otherwise dominate).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numba import njit

from ..recipes import Spec
from .base import Observer


class HistogramObserver(Observer):
    """Histogram of |x| (see the module docstring) plus exact min/max."""

    name = "histogram"

    def __init__(self, granularity: str = "tensor", axis: int = 0, bins: int = 2048) -> None:
        super().__init__(granularity, axis)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 16 or bins & (bins - 1):
            raise ValueError(f"{self.name} observer: bins must be a power of two >= 16, got {bins!r}")
        self.bins = bins

    def _update(self, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        a = rows.abs()
        amax = torch.maximum(-lo, hi)
        if self.n_batches == 0:
            self.lo, self.hi = lo, hi
            self.top = torch.where(amax > 0, amax, torch.ones_like(amax))
            self.signed = torch.zeros(rows.shape[0], 2, self.bins, dtype=torch.int64)
        else:
            self.lo, self.hi = torch.minimum(self.lo, lo), torch.maximum(self.hi, hi)
            while True:  # each pass halves the resolution of the channels that overflow
                grow = amax > self.top
                if not grow.any():
                    break
                merged = self.signed[grow].reshape(-1, 2, self.bins // 2, 2).sum(-1)
                self.signed[grow] = torch.cat([merged, torch.zeros_like(merged)], dim=2)
                # (capped at float32's max, which every finite |x| fits under)
                self.top = torch.where(grow, (self.top * 2).clamp(max=torch.finfo(torch.float32).max), self.top)
        # |x| / top <= 1 first, then * bins (a power of two: exact); bins / top could overflow float32
        idx = ((a / self.top[:, None]) * self.bins).to(torch.int64).clamp_(0, self.bins - 1)
        # flat index: (channel, sign: 0 negative / 1 non-negative, bin)
        flat = idx + ((torch.arange(rows.shape[0]) * 2)[:, None] + (rows >= 0)) * self.bins
        self.signed += torch.bincount(flat.reshape(-1), minlength=self.signed.numel()).reshape(self.signed.shape)

    @property
    def hist(self) -> torch.Tensor:
        """Counts of |x| per bin, (channels, bins) int64."""
        return self.signed.sum(1)

    @property
    def width(self) -> np.ndarray:
        """Bin width per channel."""
        return self.top.double().numpy() / self.bins  # float64: exact even where top / bins is subnormal

    def _clip(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The range for clipping magnitude ``a`` (see the module docstring)."""
        lo, hi = self.lo.numpy(), self.hi.numpy()
        a = np.asarray(a, np.float32)
        # data entirely beyond a on one side (e.g. all values > a > 0) collapses onto +-a
        return np.minimum(np.maximum(lo, -a), a), np.maximum(np.minimum(hi, a), -a)


class PercentileObserver(HistogramObserver):
    """Clip at the ``percentile`` of |x| (default 99.99)."""

    name = "percentile"

    def __init__(self, granularity: str = "tensor", axis: int = 0, bins: int = 2048, percentile: float = 99.99) -> None:
        super().__init__(granularity, axis, bins)
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile observer: percentile must be in (0, 100], got {percentile!r}")
        self.percentile = float(percentile)

    def _range(self, fmt: Spec | None) -> tuple[np.ndarray, np.ndarray]:
        h = self.hist.numpy().astype(np.float64)
        cdf = np.cumsum(h, axis=1) / h.sum(axis=1, keepdims=True)
        target = self.percentile / 100
        idx = np.minimum((cdf < target).sum(axis=1), self.bins - 1)  # first bin with cdf >= target
        rows = np.arange(h.shape[0])
        below = np.where(idx > 0, cdf[rows, np.maximum(idx - 1, 0)], 0.0)
        step = cdf[rows, idx] - below
        frac = np.clip(np.where(step > 0, (target - below) / np.where(step > 0, step, 1), 1.0), 0, 1)
        return self._clip((idx + frac) * self.width)


class MSEObserver(HistogramObserver):
    """Clip where the target format's quantization MSE over the histogram is least."""

    name = "mse"

    def __init__(self, granularity: str = "tensor", axis: int = 0, bins: int = 2048,
                 start_bin: int = 128, stride: int = 1) -> None:  # fmt: skip
        super().__init__(granularity, axis, bins)
        if not 0 <= start_bin < bins or stride < 1:
            raise ValueError(f"mse observer: need 0 <= start_bin < bins and stride >= 1, got {start_bin}, {stride}")
        self.start_bin, self.stride = start_bin, stride

    def _range(self, fmt: Spec | None) -> tuple[np.ndarray, np.ndarray]:
        from ..config_base import activation_spec
        from ..fakequant import RangeQuantizer, kind

        fmt = fmt if fmt is not None else activation_spec("int8", {})
        if kind(fmt) != "ranged":
            raise ValueError(f"mse observer: {fmt.label()} has no per-tensor/channel scale to fit a range to")
        # counts of negative values (bin b holds -centre_b) then non-negative ones (+centre_b)
        h = self.signed.numpy().reshape(self.signed.shape[0], -1).astype(np.float64)
        width = self.width.astype(np.float64)
        cand = np.arange(self.start_bin, self.bins, self.stride)
        data_lo, data_hi = self.lo.numpy(), self.hi.numpy()
        best = np.empty(h.shape[0], np.float32)
        chunk = max(1, (1 << 22) // (cand.size * 2 * self.bins))  # channels per pass (bounded memory)
        for c0 in range(0, h.shape[0], chunk):
            sl = slice(c0, c0 + chunk)
            centers = ((np.arange(self.bins) + 0.5)[None, :] * width[sl, None]).astype(np.float32)  # (C, B)
            amax = centers[:, cand]  # (C, K) candidate clipping magnitudes
            # the range the layer would really use for this clipping value (see _clip)
            lo = np.maximum(data_lo[sl, None], -amax)
            hi = np.minimum(data_hi[sl, None], amax)
            values = np.concatenate([-centers, centers], axis=1)  # (C, 2B)
            grid = np.broadcast_to(values[:, None, :], (*amax.shape, values.shape[1])).reshape(-1, values.shape[1])
            q = RangeQuantizer(fmt, lo.ravel(), hi.ravel(), axis=0)(torch.from_numpy(np.ascontiguousarray(grid)))
            err = ((q.numpy().astype(np.float64) - grid) ** 2).reshape(*amax.shape, values.shape[1])
            mse = (err * h[sl, None, :]).sum(-1)  # (C, K)
            best[sl] = amax[np.arange(amax.shape[0]), np.argmin(mse, axis=1)]
        return self._clip(best)


class EntropyObserver(HistogramObserver):
    """TensorRT's entropy (KL divergence) calibration."""

    name = "entropy"

    def __init__(self, granularity: str = "tensor", axis: int = 0, bins: int = 2048, start_bin: int = 128,
                 stride: int = 1, num_quantized_bins: int | None = None) -> None:  # fmt: skip
        super().__init__(granularity, axis, bins)
        if not 0 < start_bin <= bins or stride < 1:
            raise ValueError(f"entropy observer: need 0 < start_bin <= bins and stride >= 1, got {start_bin}, {stride}")
        self.start_bin, self.stride, self.nq = start_bin, stride, num_quantized_bins

    def quantized_bins(self, fmt: Spec | None, nonneg: bool) -> int:
        if self.nq is not None:
            return int(self.nq)
        from ... import formats

        f = formats.get(fmt if fmt is not None else "int8")
        if f.family != "integer":
            raise ValueError(
                f"entropy observer: KL calibration models a uniform integer grid; for {f.name} give "
                f"num_quantized_bins=..."
            )
        return 1 << (f.bits - 1 + int(nonneg))

    def _range(self, fmt: Spec | None) -> tuple[np.ndarray, np.ndarray]:
        nonneg = self.lo.numpy() >= 0
        h = self.hist.numpy()
        idx = np.array([kl_argmin(h[c], self.start_bin, self.stride, self.quantized_bins(fmt, bool(nonneg[c])))
                        for c in range(h.shape[0])])  # fmt: skip
        return self._clip(idx * self.width)


@njit(cache=True)
def kl_divergences(hist: np.ndarray, start: int, stride: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    """``(i values, KL(P_i || Q_i))`` of TensorRT's entropy search over one histogram (int64)."""
    bins = hist.astype(np.float64)
    bins[0] = bins[1]  # TensorRT: ignore the spike of zeros
    n = bins.size
    tail = np.zeros(n + 1)
    for j in range(n - 1, -1, -1):
        tail[j] = tail[j + 1] + bins[j]
    cands = np.arange(start, n + 1, stride)
    kls = np.empty(cands.size)
    qsum = np.zeros(nq)
    qcnt = np.zeros(nq)
    for t in range(cands.size):
        i = cands[t]
        qsum[:] = 0.0
        qcnt[:] = 0.0
        for j in range(i):  # merge source bin j into quantized bin floor(j * nq / i) (np.digitize)
            if bins[j] != 0:
                k = (j * nq) // i
                qsum[k] += bins[j]
                qcnt[k] += 1
        p_total = tail[0]  # P = bins[:i] with the tail added to its last bin
        q_total = tail[0] - tail[i]
        kl = 0.0
        for j in range(i):
            p = bins[j] + (tail[i] if j == i - 1 else 0.0)
            if p == 0:
                continue
            q = qsum[(j * nq) // i] / qcnt[(j * nq) // i] if bins[j] != 0 else 0.0
            if q == 0:
                kl = np.inf
                break
            kl += (p / p_total) * np.log((p / p_total) / (q / q_total))
        kls[t] = kl
    return cands, kls


def kl_argmin(hist: np.ndarray, start: int, stride: int, nq: int) -> int:
    """The bin count ``i`` TensorRT's entropy calibration picks (the last minimum on ties)."""
    hist = np.ascontiguousarray(hist, dtype=np.int64)
    if hist.size < start:
        return hist.size
    cands, kls = kl_divergences(hist, start, stride, nq)
    return int(cands[len(kls) - 1 - np.argmin(kls[::-1])])


__all__: list[Any] = ["HistogramObserver", "PercentileObserver", "MSEObserver", "EntropyObserver",
                      "kl_divergences", "kl_argmin"]  # fmt: skip
