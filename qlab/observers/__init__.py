"""Calibration observers by name: ``qlab.observers.get("percentile", percentile=99.9)``.

The implementation lives in :mod:`qlab.quantize.observers` (the min-max observers in its
``base`` module, the histogram ones in ``histogram``); this package only gives it a short public name.
"""

from ..quantize.observers import (
    EntropyObserver,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    get,
    names,
    register,
)

__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "MSEObserver", "EntropyObserver", "get", "names", "register",
]  # fmt: skip
