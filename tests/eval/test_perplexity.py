"""The perplexity protocol on the real SmolLM2 and WikiText-2 (small windows to stay fast)."""

from __future__ import annotations

import math
import random

import pytest
import torch

import qlab
from qlab.eval import perplexity, token_nll, token_windows, wikitext2_test
from qlab.eval.perplexity import first_tokens

W, N = 64, 2


@pytest.fixture(scope="module")
def nll(smollm2):
    return token_nll(smollm2, window=W, windows=N, progress=False)


def test_windows_are_the_first_tokens_without_bos(smollm2):
    ids = token_windows(smollm2, window=W, windows=N)
    assert ids.shape == (N, W) and ids.dtype == torch.int64
    whole = smollm2.tokenizer(wikitext2_test()[:20000], add_special_tokens=False)["input_ids"]
    assert ids.flatten().tolist() == whole[: W * N]
    assert smollm2.tokenizer.bos_token_id not in ids.flatten().tolist()


def test_prefix_tokenization_equals_whole_text(smollm2):
    text = wikitext2_test()[:60000]
    whole = smollm2.tokenizer(text, add_special_tokens=False)["input_ids"]
    for n in (1, 700, 5000, len(whole)):
        assert list(first_tokens(smollm2.tokenizer, text, n)) == whole[:n]


def test_protocol_scores_windows_times_window_minus_one_tokens(smollm2, nll):
    assert nll.shape == (N, W - 1)
    # independent computation: each window alone through the model (positions from 0), cross-entropy
    # of the shifted targets -- so windows do not see each other and the first token is never scored
    ids = token_windows(smollm2, window=W, windows=N)
    with torch.inference_mode():
        ref = [torch.nn.functional.cross_entropy(smollm2.model(r[None]).logits[0, :-1], r[1:], reduction="none") for r in ids]
    torch.testing.assert_close(nll, torch.stack(ref), rtol=1e-5, atol=1e-5)


def test_evaluate_is_exp_mean_nll(smollm2, nll):
    ppl = smollm2.evaluate(window=W, windows=N, progress=False)["perplexity"]
    assert ppl == pytest.approx(math.exp(nll.double().mean().item()), rel=1e-6)
    assert 10 < ppl < 200  # a real 135M model on Wikipedia text


def test_shuffled_text_has_much_higher_perplexity(smollm2, nll):
    words = wikitext2_test()[:20000].split(" ")
    random.Random(0).shuffle(words)
    ppl = math.exp(nll.double().mean().item())
    assert perplexity(smollm2, " ".join(words), window=W, windows=N, progress=False) > 5 * ppl


def test_bad_arguments(smollm2):
    with pytest.raises(ValueError, match="tokens"):
        perplexity(smollm2, "far too short", window=W, windows=N)
    with pytest.raises(ValueError, match="window"):
        token_windows(smollm2, window=1, windows=2)
    digits = qlab.models.load("digits-cnn")
    with pytest.raises(ValueError, match="no tokenizer"):
        perplexity(digits, window=W, windows=N)


# -- issue 11, item 13 and the sentence-encoder crash ------------------------------------------------
def test_window_beyond_trained_context_warns(tmp_path):
    from tests.models.test_gguf_path import QTYPES, write_tiny_llama

    path, _ = write_tiny_llama(tmp_path / "tiny.gguf", QTYPES)  # a real LLaMA GGUF, context_length 256
    m = qlab.models.load(path, progress=False)
    assert m.model.config.max_position_embeddings == 256
    text = wikitext2_test()[:20000]
    with pytest.warns(UserWarning, match=r"window=300 is beyond tiny's trained context of 256 tokens"):
        assert math.isfinite(perplexity(m, text, window=300, windows=1, progress=False))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the context: no warning
        perplexity(m, text, window=256, windows=1, progress=False)


def test_sentence_encoder_is_refused_clearly(minilm):
    with pytest.raises(ValueError, match=r"minilm-l6 is a 'sentence-encoder' model: perplexity.*need a causal "
                                         r"language model \(kind 'causal-lm'"):
        perplexity(minilm, window=W, windows=N, progress=False)


def test_llama_perplexity_protocol_scores_the_second_half(smollm2, nll):
    """llama-perplexity on SmolLM2 (its GGUF sets add_bos_token = false: no BOS): the same windows
    as full-window, only positions window/2 .. window-2 scored (window - 1 - window/2 tokens each)."""
    from qlab.core.protocols import tokenizer_bos

    assert tokenizer_bos(smollm2.tokenizer) is None
    ids = token_windows(smollm2, window=W, windows=N, protocol="llama-perplexity")
    assert torch.equal(ids, token_windows(smollm2, window=W, windows=N))
    half = token_nll(smollm2, window=W, windows=N, progress=False, protocol="llama-perplexity")
    assert half.shape == (N, W - 1 - W // 2)
    torch.testing.assert_close(half, nll[:, W // 2 :])
    ppl = perplexity(smollm2, window=W, windows=N, progress=False, protocol="llama-perplexity")
    assert ppl == pytest.approx(math.exp(nll[:, W // 2 :].double().mean().item()), rel=1e-6)
    assert ppl < perplexity(smollm2, window=W, windows=N, progress=False)  # later tokens have more context
    with pytest.raises(ValueError, match="protocol='strided'"):
        perplexity(smollm2, window=W, windows=N, progress=False, protocol="strided")
