"""What every backend returns: a model quantized by, and running on, a real runtime, with its bytes.

The types shared by the backend packages (they import this module, and :mod:`.compare` imports
them: no cycle).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.model import Loaded


@dataclass
class BackendModel:
    """A model quantized by, and running on, a real backend.

    ``loaded.model`` executes on the backend (for ONNX Runtime an adapter module around the
    ``InferenceSession``); attribute access falls through to ``loaded``, so ``qlab.eval``
    functions and ``.evaluate()`` take this object directly.
    """

    backend: str
    scheme: str
    loaded: Any
    weight_bytes: int
    disk_bytes: int
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name == "loaded":  # during copy/unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(self.loaded, name)

    @property
    def label(self) -> str:
        return f"{self.backend}: {self.scheme}"

    def __repr__(self) -> str:
        return f"BackendModel({self.label!r}, {self.loaded.name!r}, weight_bytes={self.weight_bytes:,})"


def state_bytes(module: torch.nn.Module) -> int:
    """Bytes of every tensor in ``module.state_dict()`` (shared storages counted once).

    Quantized tensors count their integer codes plus their scales/zero-points (float32 + int32
    per channel, or one pair per tensor); torch.ao's packed-parameter tuples are unpacked.
    """
    seen: set[tuple[int, int]] = set()

    def count(v: Any) -> int:
        if isinstance(v, tuple | list):
            return sum(count(x) for x in v)
        if not isinstance(v, torch.Tensor):
            return 0
        if v.is_quantized:
            per_channel = v.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            return v.numel() * v.int_repr().element_size() + 8 * (v.q_per_channel_scales().numel() if per_channel else 1)
        key = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else (id(v), 0)
        if key in seen:
            return 0
        seen.add(key)
        return v.numel() * v.element_size()

    return sum(count(v) for v in module.state_dict().values())


def saved_bytes(module: torch.nn.Module) -> int:
    """Size of ``torch.save(module.state_dict())``."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


def float_model(m: Loaded) -> BackendModel:
    """The float32 PyTorch model itself, as the reference row."""
    return BackendModel("torch", "fp32 (reference)", m, state_bytes(m.model), saved_bytes(m.model))


__all__ = ["BackendModel", "float_model", "saved_bytes", "state_bytes"]
