"""KL divergence / top-1 agreement: against torch's own kl_div, and on the real SmolLM2."""

from __future__ import annotations

import math

import pytest
import torch

import qlab
from qlab.eval import compare, kl_divergence, reference

W, N = 64, 2


def test_kl_divergence_matches_torch_kl_div():
    g = torch.Generator().manual_seed(0)
    ref, other = torch.randn(3, 5, 100, generator=g) * 3, torch.randn(3, 5, 100, generator=g) * 3
    out = kl_divergence(ref, other)
    lp, lq = ref.log_softmax(-1), other.log_softmax(-1)
    want = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)  # KL(P_ref || Q)
    assert out["kl"] == pytest.approx(want.double().mean().item(), rel=1e-5)
    assert out["kl_max"] == pytest.approx(want.max().item(), rel=1e-5)
    assert out["n_tokens"] == 15
    assert out["top1"] == (ref.argmax(-1) == other.argmax(-1)).double().mean().item()
    same = kl_divergence(ref, ref)
    assert same["kl"] == 0.0 and same["top1"] == 1.0
    # invariant to a per-token shift of the logits (only the distribution matters)
    assert kl_divergence(ref, other + 7.0)["kl"] == pytest.approx(out["kl"], rel=1e-4)
    with pytest.raises(ValueError, match="shapes"):
        kl_divergence(ref, other[:, :4])


@pytest.fixture(scope="module")
def ref(smollm2):
    return reference(smollm2, window=W, windows=N, progress=False)


def test_reference_holds_scored_log_probs(ref):
    assert ref.ids.shape == (N, W) and ref.logprobs.shape == (N, W - 1, 49152) and ref.nll.shape == (N, W - 1)
    assert (ref.window, ref.windows, ref.nbytes) == (W, N, N * (W - 1) * 49152 * 4)
    torch.testing.assert_close(ref.nll, -ref.logprobs.gather(2, ref.ids[:, 1:, None])[..., 0])
    assert ref.perplexity == pytest.approx(math.exp(ref.nll.double().mean().item()), rel=1e-12)
    probs = ref.logprobs.double().exp().sum(-1)  # float32 log_softmax over 49k entries: ~1e-5 off
    torch.testing.assert_close(probs, torch.ones(N, W - 1, dtype=torch.float64), rtol=0, atol=1e-4)


def test_model_against_itself(smollm2, ref):
    out = compare(smollm2, ref, progress=False)
    assert out["kl"] == 0.0 and out["kl_max"] == 0.0 and out["top1"] == 1.0
    assert out["perplexity"] == ref.perplexity and out["delta_perplexity"] == 0.0
    assert out["n_tokens"] == N * (W - 1)


def test_perturbed_model_diverges(smollm2, ref):
    m = smollm2.fresh()
    with torch.no_grad():
        for layer in m.model.model.layers[10:14]:
            w = layer.mlp.up_proj.weight
            w.copy_(torch.from_numpy(qlab.roundtrip(w.numpy(), "int2")))  # crude 2-bit weights
    out = m.evaluate(reference=ref, progress=False)
    assert 0.005 < out["kl"] < 5 and out["kl_p99"] > out["kl_median"]
    assert 0.3 < out["top1"] < 1.0
    assert out["perplexity"] > ref.perplexity
    # the same numbers from the plain-tensor API (it accepts log-probabilities as well as logits)
    plain = kl_divergence(ref.logprobs, qlab.eval.logits(m, window=W, windows=N, progress=False)[:, :-1])
    assert plain["kl"] == pytest.approx(out["kl"], rel=1e-4)
    assert plain["top1"] == out["top1"]
