import numpy as np
import pytest

from qlab.models import minilm_dir, minilm_weights


def test_minilm_ships_real_fp32_weights():
    assert (minilm_dir() / "model.safetensors").is_file()
    w = minilm_weights()
    assert len(w) > 30 and all(v.dtype == np.float32 for v in w.values())
    total = sum(v.size for v in w.values())
    assert 22_000_000 < total < 23_000_000  # 22.7M parameters incl. embeddings
    x = minilm_weights("encoder.layer.0.output.dense.weight")
    assert x.shape == (384, 1536) and 0.01 < x.std() < 0.2
    x[:] = 0  # copies: mutating one result never changes the next
    assert minilm_weights("encoder.layer.0.output.dense.weight").std() > 0.01


def test_unknown_tensor_name():
    with pytest.raises(ValueError, match="valid names"):
        minilm_weights("nope")
