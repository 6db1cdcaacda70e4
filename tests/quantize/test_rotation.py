"""Rotations (qlab.quantize.rotation): Hadamard matrices checked by their definition (+-1 entries,
``H H^T = n I``, and scipy's Sylvester matrix for powers of two), Haar rotations orthogonal, and
the fused SmolLM2 equal to the float model (transformers' own forward) to float32 precision."""

from __future__ import annotations

import pytest
import torch

from qlab.quantize import rotation as R
from tests.quantize._fixtures import single_thread, smol  # noqa: F401


@pytest.mark.parametrize("n", [1, 2, 8, 12, 20, 36, 64, 576, 1536])
def test_hadamard_definition(n: int) -> None:
    h = R.hadamard(n)
    assert h.shape == (n, n)
    assert torch.equal(h.abs(), torch.ones(n, n))
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))


@pytest.mark.parametrize("n", [12, 20, 36, 44, 60])
def test_paley_orders(n: int) -> None:
    h = R.paley(n)
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))


def test_sylvester_equals_scipy() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    for n in (2, 16, 128):
        assert torch.equal(R.hadamard(n), torch.from_numpy(scipy_linalg.hadamard(n).astype("float64")))


def test_refusals() -> None:
    with pytest.raises(ValueError, match="Paley"):
        R.paley(10)
    with pytest.raises(ValueError, match="order 6"):
        R.hadamard(6)  # no Hadamard matrix of order 6 exists
    with pytest.raises(ValueError, match="kind"):
        R.orthogonal(4, "givens")


def test_random_orthogonal_seeded() -> None:
    q = R.orthogonal(64, "random", seed=3)
    assert torch.allclose(q @ q.T, torch.eye(64, dtype=torch.float64), atol=1e-12)
    assert torch.equal(q, R.orthogonal(64, "random", seed=3))
    assert not torch.equal(q, R.orthogonal(64, "random", seed=4))


def _logits(m, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m.model(ids).logits.double()


@pytest.mark.parametrize("kind,online", [("hadamard", True), ("random", False)])
def test_rotated_smollm2_same_logits(smol, kind: str, online: bool) -> None:  # noqa: F811
    ids = smol.tokenizer("The quick brown fox jumps over the lazy dog. Quantization", return_tensors="pt")["input_ids"]
    ref = _logits(smol, ids)
    m = smol.fresh()
    info = R.rotate_model(m, kind=kind, seed=1, online=online)
    assert info["kind"] == kind and info["gqa_group"] == 3
    assert m.model.lm_head.weight is not m.model.model.embed_tokens.weight
    emb0 = smol.model.model.embed_tokens.weight
    assert not torch.allclose(m.model.model.embed_tokens.weight, emb0)  # the weights did change
    got = _logits(m, ids)
    err = (got - ref).abs().max().item()
    assert err < 2e-3 * ref.abs().max().item(), err  # float32 rounding over 30 layers
    assert torch.equal(got.argmax(-1), ref.argmax(-1))
    with pytest.raises(ValueError, match="fresh"):
        R.rotate_model(m)


def test_rotation_spreads_outliers(smol) -> None:  # noqa: F811
    """The residual stream's largest |x| / rms (kurtosis proxy) drops after a Hadamard rotation."""
    ids = smol.tokenizer("Paris is the capital of France, and Berlin is", return_tensors="pt")["input_ids"]
    m = smol.fresh()
    R.rotate_model(m)
    ratios = []
    for model in (smol, m):
        got = {}
        h = model.model.model.layers[10].mlp.gate_proj.register_forward_pre_hook(lambda mod, a, got=got: got.update(x=a[0]))
        with torch.no_grad():
            model.model(ids)
        h.remove()
        x = got["x"][0]
        ratios.append((x.abs().amax(-1) / x.pow(2).mean(-1).sqrt()).mean().item())
    assert ratios[1] < 0.5 * ratios[0], ratios
