"""What every floor above ``qlab.models`` takes: a loaded model, typed.

:class:`Loaded` is the structural type of what :func:`qlab.models.load` returns (a
:class:`qlab.models.LoadedModel`) and of the objects that stand in for one (a backend's
``BackendModel``, a ``dataclasses.replace`` copy with another module): a ``name``, a ``kind``, the
float ``torch.nn.Module`` in ``model``, its ``tokenizer`` and ``config``. Functions that accept
"a loaded model or a bare module" take :data:`ModelLike` and unwrap it with :func:`torch_module`.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

import torch


@runtime_checkable
class Loaded(Protocol):
    """A model as :func:`qlab.models.load` returns it (see :class:`qlab.models.LoadedModel`)."""

    name: str
    kind: str
    model: torch.nn.Module
    tokenizer: Any
    config: dict[str, Any]

    def evaluate(self, **kw: Any) -> dict[str, float]: ...


#: a loaded model, or the ``torch.nn.Module`` itself
ModelLike: TypeAlias = Loaded | torch.nn.Module


def torch_module(model: ModelLike) -> torch.nn.Module:
    """The ``torch.nn.Module`` of a ``qlab.models.load`` result (or the module itself)."""
    # a torch module first: transformers' LlamaForCausalLM has a ``.model`` attribute of its own
    mod = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(mod, torch.nn.Module):
        raise TypeError(f"expected a torch module or a qlab.models.load() result, got {type(model).__name__}")
    return mod


def weights_digest(model: ModelLike) -> str:
    """SHA-256 (hex) of the module's class, every parameter's and buffer's name, shape, dtype and
    *all* its bytes: any change of any value changes it (a sample or row sums would miss in-row
    swaps). Hashing is ~1 s per GB, cheap next to a sweep or an export it keys."""
    import hashlib

    mod = torch_module(model)
    h = hashlib.sha256(type(mod).__name__.encode())
    for kind, items in (("param", mod.named_parameters()), ("buffer", mod.named_buffers())):
        for name, p in items:
            t = p.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{kind}:{name}{tuple(p.shape)}{p.dtype};".encode())
            h.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


__all__ = ["Loaded", "ModelLike", "torch_module", "weights_digest"]
