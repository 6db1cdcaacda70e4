"""ORT calibration fed by qlab's calibration data.

``onnxruntime.quantization.quantize_static`` pulls calibration inputs from a
``CalibrationDataReader``: an object whose ``get_next()`` returns one ``session.run`` feed dict
per call and ``None`` when exhausted. ORT then runs an *augmented* copy of the model that
outputs every tensor to be quantized and hands those tensors to a calibrator:

===================  =============================================================================
``minmax``           running min / max of each tensor over all batches
``entropy``          TensorRT-style KL calibration: histogram (128 bins), the clipping threshold whose
                     128-level quantized distribution has the least KL divergence from the original
``percentile``       histogram (2048 bins), clip at the 99.999th percentile of ``|x|``
``distribution``     histogram (2048 bins), threshold fitted to the shape of the distribution
                     (ORT's ``DistributionCalibrater``, ``scenario="same"``)
===================  =============================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ...core.model import Loaded
from .export import BACKEND, feeds

CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "distribution")


def calibration_method(name: str) -> Any:
    """The ``onnxruntime.quantization.CalibrationMethod`` for a qlab name."""
    from onnxruntime.quantization import CalibrationMethod

    table = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "distribution": CalibrationMethod.Distribution,
    }
    if name not in table:
        raise ValueError(f"{BACKEND}: calibration method must be one of {CALIBRATION_METHODS}, got {name!r}")
    return table[name]


def as_batches(m: Loaded, calibration: Sequence[Any] | str | None, batch_size: int = 32) -> list[Any]:
    """Calibration input batches from a list of batches, or from text for a sentence encoder
    (a string or a list of sentences, tokenized ``batch_size`` at a time)."""
    if calibration is None or len(calibration) == 0:
        raise ValueError(f"{BACKEND}: static quantization needs calibration batches (got none)")
    if isinstance(calibration, str):
        calibration = [s for s in calibration.splitlines() if s.strip()]
    if all(isinstance(s, str) for s in calibration):
        if m.kind != "sentence-encoder":
            raise ValueError(f"{BACKEND}: text calibration needs a sentence encoder, {m.name} is a {m.kind}")
        from ...core.calibration import tokenize

        return [tokenize(m, calibration[i : i + batch_size]) for i in range(0, len(calibration), batch_size)]
    return list(calibration)


class BatchReader(CalibrationDataReader):
    """A ``CalibrationDataReader`` over qlab batches (image tensors or tokenizer dicts).

    Inputs are converted once to the feed dicts ORT wants (float32 images, int64 token ids);
    NaN/Inf in a batch is an error (a calibrated range would silently become NaN). ``rewind``
    restarts the pass, so one reader can serve several quantizations.
    """

    def __init__(self, batches: Sequence[Any], input_names: list[str]) -> None:
        if not batches:
            raise ValueError(f"{BACKEND}: static quantization needs calibration batches (got none)")
        self._feeds = [feeds(b, input_names) for b in batches]
        for f in self._feeds:
            for k, v in f.items():
                if v.dtype.kind == "f" and not np.isfinite(v).all():
                    raise ValueError(f"{BACKEND}: calibration input {k!r} contains NaN or Inf")
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._feeds):
            return None
        self._i += 1
        return self._feeds[self._i - 1]

    def rewind(self) -> None:
        self._i = 0

    def __len__(self) -> int:
        return len(self._feeds)


__all__ = ["CALIBRATION_METHODS", "BatchReader", "as_batches", "calibration_method"]
