"""2:4 structured sparsity: masks, magnitude and Wanda scores, prune-then-quantize, byte formula."""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import numpy as np
import pytest
import torch

import qlab
from qlab.analysis.lowbits import layer_input, output_error
from qlab.quantize.sparsity import (
    activation_norms,
    compressed_bytes,
    nm_mask,
    prune_weight,
    sparsify_model,
    wanda_score,
)
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)

W = qlab.models.minilm_weights("encoder.layer.0.attention.self.query.weight")  # real (384, 384) weight


def test_mask_keeps_the_two_largest_of_every_four():
    mask = nm_mask(np.abs(W))
    g = mask.reshape(-1, 4)
    assert (g.sum(1) == 2).all()
    # independently: torch.topk over each group of 4 along the input axis
    idx = torch.topk(torch.from_numpy(np.abs(W)).reshape(-1, 4), 2, dim=1).indices
    ref = torch.zeros(g.shape, dtype=torch.bool).scatter_(1, idx, True).numpy()
    assert np.array_equal(g, ref)
    # every kept |w| >= every dropped |w| of its group
    a = np.abs(W).reshape(-1, 4)
    assert (np.where(g, a, np.inf).min(1) >= np.where(g, -np.inf, a).max(1)).all()
    m14 = nm_mask(np.abs(W), 1, 4).reshape(-1, 4)
    assert (m14.sum(1) == 1).all() and np.array_equal(m14.argmax(1), a.argmax(1))


def test_prune_then_quantize_keeps_zeros_and_counts_bytes():
    for fmt in ("q8_0", "q4_k", "q4_0", None):  # q4_k: rows of 192 kept values fall back to q5_0
        y, mask, nbytes, used = prune_weight(W, fmt)
        assert np.all(y[~mask] == 0) and (y == 0).mean() >= 0.5
        kept = W[mask].reshape(W.shape[0], W.shape[1] // 2)
        if fmt is None:
            assert used == "f32" and np.array_equal(y[mask], kept.ravel())
            assert nbytes == 4 * kept.size + W.size // 8
        else:
            assert used == ("q5_0" if fmt == "q4_k" else fmt)
            enc = qlab.formats.get(used).encode(kept)
            assert np.array_equal(y[mask], qlab.formats.get(used).decode(enc).ravel())
            assert nbytes == enc.nbytes + W.shape[0] * W.shape[1] // 8  # values + 2-bit index per kept value
    # fp16 values: 0.5625 of the dense fp16 bytes, NVIDIA's 2:4 compression ratio
    assert compressed_bytes((64, 256), "fp16")[0] == 0.5625 * 2 * 64 * 256


def test_wanda_score_and_norms(smol):
    m = smol.fresh()
    name = "model.layers.0.self_attn.q_proj"
    norms = activation_norms(m, include=name, seq_len=64, n_seq=2)
    # independently: the q_proj input is layer 0's input_layernorm of the embeddings
    ids = qlab.quantize.calibration.batches(qlab.eval.calibration_text(), m, seq_len=64)[:2]
    mod = m.model
    with torch.inference_mode():
        xs = [mod.model.layers[0].input_layernorm(mod.model.embed_tokens(b["input_ids"])).reshape(-1, 576) for b in ids]
    ref = torch.cat(xs).double().norm(dim=0).numpy()
    np.testing.assert_allclose(norms[name], ref, rtol=1e-5)
    x = layer_input(m, name, window=64)  # the first 64 calibration tokens = the first window above
    np.testing.assert_allclose(x.numpy(), xs[0].numpy(), rtol=1e-6, atol=1e-6)
    w = mod.model.layers[0].self_attn.q_proj.weight.detach().numpy().copy()
    score = wanda_score(w, norms[name])
    np.testing.assert_array_equal(score, np.abs(w).astype(np.float64) * norms[name][None, :])
    rep = sparsify_model(m, "wanda", include=name, norms=norms, dense=None)
    got = mod.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    assert np.array_equal(got, np.where(nm_mask(score), w, 0)) and rep.sparsity == (got == 0).mean() >= 0.5
    assert not np.array_equal(nm_mask(score), nm_mask(np.abs(w)))  # activations change the choice
    # Wanda's choice costs less output error on these inputs than magnitude's, and output_error is
    # the plain definition
    mag = np.where(nm_mask(np.abs(w)), w, 0)
    assert output_error(x, w, got) < output_error(x, w, mag)
    xd, wd = x.double().numpy(), w.astype(np.float64)
    assert output_error(x, w, mag) == pytest.approx(np.linalg.norm(xd @ (mag - wd).T) / np.linalg.norm(xd @ wd.T))


def test_sparsify_model_report(smol):
    m = smol.fresh()
    rep = sparsify_model(m, "magnitude", "q8_0", include="model.layers.1.*")
    pruned = [r for r in rep.layers if r.name.startswith("model.layers.1.")]
    assert len(pruned) == 7 and all(r.sparsity >= 0.5 and r.used == "q8_0" for r in pruned)
    for r in pruned:
        o, i = r.shape
        assert r.nbytes == compressed_bytes((o, i), "q8_0")[0] == o * i // 2 // 32 * 34 + o * i // 8
    dense = [r for r in rep.layers if not r.name.startswith("model.layers.1.")]
    assert len(dense) == 204 and all(r.used == "q8_0" for r in dense)
    params = sum(p.numel() for p in m.model.parameters())
    assert rep.total_params == params and rep.total_bytes == sum(r.nbytes for r in rep.layers) + 4 * rep.other_params
    w = m.model.model.layers[1].mlp.down_proj.weight.detach().numpy()
    assert ((w.reshape(-1, 4) == 0).sum(1) >= 2).all()
    assert "2:4 magnitude + q8_0" in rep.summary()


def test_bad_input(smol):
    with pytest.raises(ValueError, match="not a multiple of m=4"):
        nm_mask(np.ones((3, 10)))
    with pytest.raises(ValueError, match="0 < n < m"):
        nm_mask(np.ones((3, 8)), 4, 4)
    with pytest.raises(ValueError, match="unknown scoring 'random'"):
        sparsify_model(smol, "random")
    with pytest.raises(ValueError, match="no Linear weight matches"):
        sparsify_model(smol, "magnitude", include="nothing*")
    with pytest.raises(ValueError, match="norms"):
        wanda_score(W, np.ones(5))
    lin = torch.nn.Sequential(torch.nn.Linear(6, 4))
    with pytest.raises(ValueError, match="row length is not a multiple of m=4"):
        sparsify_model(lin, include="*")
