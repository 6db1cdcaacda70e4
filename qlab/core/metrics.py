"""Error metrics, defined once: SQNR, MSE, max and mean |error|.

SQNR (signal-to-quantization-noise ratio) = 10 log10(sum x^2 / sum (x - x_hat)^2) in dB. For a
uniform b-bit quantizer of a full-scale signal it grows by ~6.02 dB per bit (Bennett, 1948,
"Spectra of quantized signals"). Every SQNR qlab prints goes through :func:`sqnr_from_power`.
"""

from __future__ import annotations

import math

import numpy as np


def sqnr_from_power(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` in dB from the two powers (sums or means alike): ``inf`` when
    the noise is 0 (exact), ``-inf`` when the signal is 0 and the noise is not. Powers must be
    non-negative and not NaN (ValueError), and not both infinite (their ratio is undefined)."""
    for name, v in (("signal", signal), ("noise", noise)):
        if not isinstance(v, int | float | np.floating | np.integer) or isinstance(v, bool):
            raise TypeError(f"sqnr_from_power: {name} must be a real number (a power), got {type(v).__name__} {v!r}")
        if math.isnan(v) or v < 0:
            raise ValueError(f"sqnr_from_power: {name}={v!r} is not a power (a sum of squares is >= 0, not NaN)")
    if math.isinf(signal) and math.isinf(noise):
        raise ValueError("sqnr_from_power: signal and noise are both infinite (an overflowed sum); their ratio is undefined")
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * (math.log10(signal) - math.log10(noise)))


def _real_pair(x: np.ndarray, y: np.ndarray, fn: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float64 arrays of one shape; complex, text and object arrays and
    mismatched shapes raise (a broadcast would compare the wrong elements silently)."""
    out = []
    for name, v in (("x", x), ("y", y)):
        a = np.asarray(v)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.issubdtype(a.dtype, np.complexfloating):
            raise TypeError(f"{fn}: {name} must be a real numeric array (int/float), got dtype {a.dtype}")
        out.append(a.astype(np.float64))
    if out[0].shape != out[1].shape:
        raise ValueError(f"{fn}: x and y must have the same shape, got {out[0].shape} and {out[1].shape}")
    return out[0], out[1]


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """SQNR of ``y`` as an approximation of ``x``, in dB (``inf`` when exact). Both are scaled by
    their largest magnitude first (the ratio is scale-free), so float64 values near 1e308 give
    the right figure instead of inf/inf = NaN."""
    x, y = _real_pair(x, y, "sqnr_db")
    with np.errstate(over="ignore", invalid="ignore"):
        m = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)))
        if math.isfinite(m) and m > 0:
            x, y = x / m, y / m
        noise = np.sum((x - y) ** 2)
        signal = np.sum(x**2)
    return sqnr_from_power(float(signal), float(noise))


def error_stats(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """SQNR (dB), MSE, max |error| and mean |error| of ``y`` against ``x`` (same shape, real)."""
    x, y = _real_pair(x, y, "error_stats")
    with np.errstate(over="ignore"):
        err = y - x
        return {
            "sqnr_db": sqnr_db(x, y),
            "mse": float(np.mean(err**2)) if err.size else 0.0,
            "max_abs_err": float(np.max(np.abs(err))) if err.size else 0.0,
            "mean_abs_err": float(np.mean(np.abs(err))) if err.size else 0.0,
        }


def weight_error(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """SQNR (dB), MSE and max |error| of a float32 weight, without a float64 copy of it.

    ``y - x`` is taken in float32 (exact whenever y is within a factor 2 of x, Sterbenz) and the
    sums accumulate in float64 (``einsum`` buffers): the figures of :func:`error_stats`, cheaply.
    """
    if x.size == 0:
        return float("inf"), 0.0, 0.0
    e = (y - x).ravel()
    noise = float(np.einsum("i,i->", e, e, dtype=np.float64))
    signal = float(np.einsum("i,i->", x.ravel(), x.ravel(), dtype=np.float64))
    return sqnr_from_power(signal, noise), noise / e.size, float(np.max(np.abs(e)))


__all__ = ["error_stats", "sqnr_db", "sqnr_from_power", "weight_error"]
