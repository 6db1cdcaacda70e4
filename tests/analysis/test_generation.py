"""Same prompt, every format (qlab.analysis.generation) on the real SmolLM2-135M: greedy decoding
against transformers' own ``generate``, the per-token KL against an independent numpy computation on
a separately quantized copy, the divergence index, the text pieces, the restored weights, the
validation, and the committed cache against a recomputation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import qlab
from qlab import cache
from qlab.analysis.generation import SamePrompt, display_units, greedy, pieces, same_prompt
from qlab.core.model import torch_module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm():
    return qlab.models.load("smollm2-135m", progress=False)


def test_greedy_is_transformers_generate(lm):
    model, tok = torch_module(lm), lm.tokenizer
    ids = tok("The capital of France is")["input_ids"]
    new, margin = greedy(model, ids, 10)
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=10, do_sample=False, pad_token_id=tok.eos_token_id)  # fmt: skip
    assert new == ref[0, len(ids):].tolist()
    assert len(margin) == 10 and all(v >= 0 for v in margin)


def test_same_prompt_rows_against_an_independent_computation(lm):
    model = torch_module(lm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = same_prompt(lm, "Quantization makes a neural network smaller by", ["q8_0", "q2_k"], n_tokens=8, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights not restored"
    f32, q8, q2 = r.rows
    assert (f32.label, q8.label, q2.label) == ("f32", "q8_0", "q2_k") and f32.kl == [0.0] * 8
    # the q2_k row, recomputed on a deep copy quantized by quantize_model, KL in numpy float64
    ids = lm.tokenizer("Quantization makes a neural network smaller by")["input_ids"]
    seq = torch.tensor([ids + f32.ids[:-1]])
    with torch.no_grad():
        p = model(seq).logits[0, len(ids) - 1:].double().numpy()
        other = copy.deepcopy(lm)
        qlab.quantize_model(other, "q2_k")
        qmodel = torch_module(other)
        q = qmodel(seq).logits[0, len(ids) - 1:].double().numpy()
        q_new, _ = greedy(qmodel, ids, 8)
    lp = p - np.log(np.exp(p - p.max(-1, keepdims=True)).sum(-1, keepdims=True)) - p.max(-1, keepdims=True)
    lq = q - np.log(np.exp(q - q.max(-1, keepdims=True)).sum(-1, keepdims=True)) - q.max(-1, keepdims=True)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    np.testing.assert_allclose(q2.kl, kl, rtol=1e-6, atol=1e-9)
    assert q2.ids == q_new
    first = next((i for i, (a, b) in enumerate(zip(q2.ids, f32.ids, strict=True)) if a != b), None)
    assert q2.diverge == first
    assert 0 <= q8.mean_kl < q2.mean_kl


def test_pieces_rebuild_the_text_in_whole_characters(lm):
    tok = lm.tokenizer
    ids = tok("대한민국의 수도는")["input_ids"]
    new, _ = greedy(torch_module(lm), ids, 12)
    ps = pieces(tok, ids, new)
    full = tok.decode(ids + new)
    assert full.startswith(tok.decode(ids))
    text = "".join(ps)
    assert full.endswith(text) and "\ufffd" not in text.rstrip("\ufffd")
    assert len(ps) == 12


def test_display_units_cover_every_token():
    from qlab.analysis.generation import Continuation

    row = Continuation("x", 4.0, [1, 2, 3, 4, 5], ["a", "", "", "b", ""], None, [0.1] * 5)
    assert display_units(row) == [("a", 0, 1), ("b", 1, 4), ("\ufffd", 4, 5)]


@pytest.mark.parametrize(("kwargs", "err", "match"), [
    ({"prompt": ""}, ValueError, "prompt"),
    ({"prompt": 3}, ValueError, "prompt"),
    ({"n_tokens": 0}, ValueError, "n_tokens"),
    ({"n_tokens": True}, ValueError, "n_tokens"),
    ({"recipes": "q4_0"}, TypeError, "recipes"),
])  # fmt: skip
def test_bad_arguments(lm, kwargs, err, match):
    args = {"prompt": "Hello", "recipes": ["q4_0"], "n_tokens": 2, **kwargs}
    with pytest.raises(err, match=match):
        same_prompt(lm, args["prompt"], args["recipes"], args["n_tokens"], progress=False)


def test_refuses_a_model_that_is_not_a_language_model():
    with pytest.raises(ValueError, match="causal language model"):
        same_prompt(qlab.models.load("digits-cnn", progress=False), "Hello", ["q4_0"], 2)


def test_committed_cache_is_what_this_code_generates(lm):
    """The float rows of data/cache/generations.json, regenerated here; compared up to the first step
    whose two best logits are within 0.05 of each other (there another CPU may pick the other one)."""
    results = [SamePrompt.from_dict(d) for d in cache.load("generations")["rows"]]
    assert {r.prompt for r in results} >= {"The capital of France is", "대한민국의 수도는"}
    model = torch_module(lm)
    for r in results:
        f32 = r.rows[0]
        ids = lm.tokenizer(r.prompt)["input_ids"]
        assert len(ids) == r.prompt_tokens
        k = next((i for i, m in enumerate(f32.margin) if m < 0.05), len(f32.margin))
        new, _ = greedy(model, ids, max(k, 1))
        assert new[:k] == f32.ids[:k], r.prompt
        assert [row.label for row in r.rows] == ["f32", "q8_0", "q4_k_m", "q4_0", "q2_k", "tq2_0"]
