"""Lesson 16 exercise: the reference passes, plausible wrong answers fail with a useful hint; the
reference agrees with qlab.quantize.imatrix's collector on real SmolLM2 inputs."""

import numpy as np
import torch

import qlab.exercises as ex
from qlab.exercises.imatrix import importance_vector


def test_reference_passes():
    assert ex.check("importance_vector", importance_vector)
    assert ex.names(16) == ["importance_vector"]


def test_mean_abs_fails():
    r = ex.check("importance_vector", lambda bs: np.mean(np.abs(np.concatenate([b.reshape(-1, b.shape[-1]) for b in bs])), 0))
    assert not r and "square first" in r.hint


def test_mean_of_batch_means_fails():
    def per_batch(bs):
        return np.mean([np.square(b.reshape(-1, b.shape[-1])).mean(0) for b in bs], 0).astype(np.float32)

    r = ex.check("importance_vector", per_batch)
    assert not r and "case 2" in r.message and "long batch counts more" in r.hint


def test_reference_matches_collector():
    import qlab
    from qlab.eval import calibration_text
    from qlab.quantize import collect_imatrix

    m = qlab.models.load("smollm2-135m", progress=False)
    text = calibration_text(3000)
    imx = collect_imatrix(m, text, window=16, windows=2, progress=False)
    got: list[np.ndarray] = []
    h = m.model.model.layers[1].mlp.down_proj.register_forward_pre_hook(lambda mod, a: got.append(a[0].numpy().copy()))
    ids = torch.tensor(m.tokenizer(text, add_special_tokens=False)["input_ids"][:32]).view(2, 16)
    try:
        with torch.inference_mode():
            for row in ids:
                m.model(input_ids=row[None])
    finally:
        h.remove()
    np.testing.assert_allclose(importance_vector(got), imx.vector("blk.1.ffn_down.weight"), rtol=1e-5)
