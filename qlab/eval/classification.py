"""Image-classifier evaluation: top-1 accuracy (digits-cnn: the deterministic sklearn-digits test split)."""

from __future__ import annotations

import torch

from ..core.model import Loaded


@torch.inference_mode()
def predict(m: Loaded, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class ids ``(n,)`` of the images ``x``."""
    model = m.model if hasattr(m, "model") else m
    return torch.cat([model(b).argmax(-1) for b in x.split(batch_size)]) if len(x) else torch.empty(0, dtype=torch.int64)


def accuracy(m: Loaded, x: torch.Tensor | None = None, y: torch.Tensor | None = None, split: str = "test") -> float:
    """Fraction of correctly classified images; default data: digits-cnn's ``split`` ("test" or "train")."""
    if (x is None) != (y is None):
        raise ValueError("give both images x and labels y, or neither (the digits split)")
    if x is None:
        from ..models.digits import load_split

        x, y = load_split(split)
    if len(y) == 0:
        raise ValueError("no images to classify")
    return (predict(m, x) == y).double().mean().item()


__all__ = ["accuracy", "predict"]
