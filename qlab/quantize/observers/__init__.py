"""Observers: collect statistics of a tensor stream (calibration batches) and turn them into a range.

>>> import qlab.observers
>>> obs = qlab.observers.get("percentile", percentile=99.9)
>>> for batch in batches:            # doctest: +SKIP
...     obs(batch)
>>> lo, hi = obs.range()             # doctest: +SKIP
>>> scale, zero_point = obs.qparams("int8", symmetric=False)   # doctest: +SKIP

=================  ==========================================================================
name               range
=================  ==========================================================================
``minmax``         running min / max (PyTorch ``MinMaxObserver``)
``moving_average`` exponential moving average of each batch's min / max, constant ``c``:
                   ``m <- m + c * (batch - m)`` (PyTorch ``MovingAverageMinMaxObserver``)
``percentile``     the ``percentile`` of |x| over a 2048-bin histogram (TensorRT / ORT)
``mse``            the clipping value minimising the quantization MSE of the histogram
``entropy``        the clipping value minimising KL(P || Q) over the histogram (TensorRT's
                   entropy calibration, Migacz, GTC 2017, "8-bit inference with TensorRT")
=================  ==========================================================================

Every observer works per tensor (``granularity="tensor"``) or per channel
(``granularity="channel"``, one range per index of ``axis``). The histogram observers are in
:mod:`qlab.quantize._histogram`. ``range()`` returns float32 ``(lo, hi)`` arrays (shape ``()`` or
``(channels,)``); ``qparams(fmt)`` applies the format's own scale rule to that range.
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import MinMaxObserver, MovingAverageMinMaxObserver, Observer, as_tensor
from .histogram import EntropyObserver, HistogramObserver, MSEObserver, PercentileObserver

_REGISTRY: dict[str, type[Observer]] = {}
ALIASES = {"min_max": "minmax", "max": "minmax", "ema": "moving_average", "moving_average_minmax": "moving_average",
           "kl": "entropy", "mse_clipping": "mse"}  # fmt: skip


def register(cls: type[Observer]) -> type[Observer]:
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """Observer names, in the order of the module docstring."""
    return list(_REGISTRY)


def get(name: str | Observer, **options: Any) -> Observer:
    """A new observer called ``name`` with ``options`` (``granularity``, ``axis``, and the observer's
    own, e.g. ``percentile=99.9``). Unknown names or options raise ``ValueError``."""
    if isinstance(name, Observer):
        if options:
            raise ValueError("options cannot be given together with an observer instance")
        return name
    if not isinstance(name, str):
        raise ValueError(f"observer must be a name (str), got {name!r}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        raise ValueError(f"unknown observer {name!r}; valid observers: {', '.join(names())}")
    cls = _REGISTRY[key]
    valid = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"{key} observer: unknown option(s) {unknown}; valid options: {', '.join(valid)}")
    return cls(**options)


register(MinMaxObserver)
register(MovingAverageMinMaxObserver)


for _cls in (PercentileObserver, MSEObserver, EntropyObserver):
    register(_cls)

__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "MSEObserver", "EntropyObserver", "get", "names", "register", "as_tensor",
]  # fmt: skip
