"""Error metrics, defined once: SQNR, MSE, max and mean |error|.

SQNR (signal-to-quantization-noise ratio) = 10 log10(sum x^2 / sum (x - x_hat)^2) in dB. For a
uniform b-bit quantizer of a full-scale signal it grows by ~6.02 dB per bit (Bennett, 1948,
"Spectra of quantized signals"). Every SQNR qlab prints goes through :func:`sqnr_from_power`.
"""

from __future__ import annotations

import numpy as np


def sqnr_from_power(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` in dB from the two powers (sums or means alike): ``inf`` when
    the noise is 0 (exact), ``-inf`` when the signal is 0 and the noise is not."""
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def sqnr_db(x: np.ndarray, y: np.ndarray) -> float:
    """SQNR of ``y`` as an approximation of ``x``, in dB (``inf`` when exact)."""
    x = np.asarray(x, np.float64)
    noise = np.sum((x - np.asarray(y, np.float64)) ** 2)
    return sqnr_from_power(float(np.sum(x**2)), float(noise))


def error_stats(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """SQNR (dB), MSE, max |error| and mean |error| of ``y`` against ``x``."""
    err = np.asarray(y, np.float64) - np.asarray(x, np.float64)
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
