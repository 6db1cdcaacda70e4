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


__all__ = ["Loaded", "ModelLike", "torch_module"]
