"""The evaluator's row-block loop (issue 13 item 4) gives the figures of the whole-window one, bit for bit.

The "old path" below is the pre-speed-up code of :func:`qlab.core.lm.reference` and
:func:`qlab.core.lm.report_logits`, written out with the public building blocks it used
(``window_logprobs`` over a whole window, ``token_kl``, ``argmax``): every figure the sweep keeps
(perplexity, KL, top-1) and every token-level array must be equal, not merely close.
"""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlab.core import lm
from qlab.quantize import quantize_model
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)


def old_reference(m, window: int, windows: int, dtype: torch.dtype, protocol: str) -> lm.Reference:
    proto = lm.protocol(protocol, window, windows)
    ids = lm.token_windows(m, None, window, windows, proto)
    lps, nlls, tops = [], [], []
    for w, lg in enumerate(lm.window_logits(m, ids, batch=2)):
        lp, n = lm.window_logprobs(lg, ids[w], proto.first)
        lps.append(lp.to(dtype))
        nlls.append(n)
        tops.append(lp.argmax(-1))
    nll = torch.stack(nlls)
    return lm.Reference(m.name, ids, torch.stack(lps), nll, lm.nll_to_perplexity(nll), torch.stack(tops), proto)


def old_stats(ref: lm.Reference, logits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kls, sames, nlls = [], [], []
    for w, lg in enumerate(logits):
        lq, n = lm.window_logprobs(lg, ref.ids[w], ref.protocol.first)
        kls.append(lm.token_kl(ref.logprobs[w], lq))
        sames.append(lq.argmax(-1) == ref.top1[w])
        nlls.append(n)
    return torch.cat(kls).numpy(), torch.cat(sames).numpy(), torch.cat(nlls).numpy()


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 63, 64, 65, 511])
def test_row_chunks_cover_every_row_without_one_row_tails(n):
    chunks = lm.row_chunks(n)
    assert [a for a, _ in chunks] == [0] + [b for _, b in chunks[:-1]] and chunks[-1][1] == n
    assert all(b - a <= lm.CHUNK_ROWS for a, b in chunks)
    assert n == 1 or all(b - a >= 2 for a, b in chunks)


@pytest.mark.parametrize("scored", [1, 33, 70, 511])
def test_window_stats_equal_whole_window_math(scored):
    """Random logits (vocabulary 3000, float16 reference): every row count, tails included."""
    g = torch.Generator().manual_seed(scored)
    v, first = 3000, 3
    logits = torch.randn(first + scored + 1, v, generator=g) * 4
    ids = torch.randint(0, v, (first + scored + 1,), generator=g)
    ref_lp = torch.log_softmax(torch.randn(scored, v, generator=g) * 4, -1).half()
    top1 = ref_lp.float().argmax(-1)
    kl, same, nll = lm.window_stats(logits, ids, first, ref_lp, top1)
    lq, want_nll = lm.window_logprobs(logits, ids, first)
    assert torch.equal(kl, lm.token_kl(ref_lp, lq))
    assert torch.equal(same, lq.argmax(-1) == top1)
    assert torch.equal(nll, want_nll)
    with pytest.raises(ValueError, match="reference window has"):
        lm.window_stats(logits[1:], ids[1:], first, ref_lp, top1)


@pytest.mark.parametrize("protocol", ["full-window", "llama-perplexity"])
def test_reference_and_report_equal_old_path_on_smollm2(smol, protocol):
    """SmolLM2, 2 windows x 64 tokens, float16 reference (the sweep's), two formats: identical figures."""
    m = smol.fresh()
    window, windows = 64, 2
    new = lm.reference(m, None, window, windows, torch.float16, progress=False, batch=2, protocol=protocol)
    old = old_reference(m, window, windows, torch.float16, protocol)
    assert torch.equal(new.ids, old.ids) and torch.equal(new.logprobs, old.logprobs)
    assert torch.equal(new.nll, old.nll) and torch.equal(new.top1, old.top1)
    assert new.perplexity == old.perplexity
    for fmt in ("q8_0", "q4_0"):
        quantize_model(m, fmt, include="model.layers.*")
        logits = list(lm.window_logits(m, new.ids, batch=2))
        rep = lm.report_logits(new, iter(logits))
        kl, same, nll = old_stats(old, logits)
        np.testing.assert_array_equal(rep.kl, kl.astype(np.float64))
        np.testing.assert_array_equal(rep.same_top, same)
        np.testing.assert_array_equal(rep.nll, nll.astype(np.float64))
        got = rep.metrics()  # equal arrays: equal sweep rows; and the formats did change the model
        assert got["kl"] > 0 and got["top1"] < 1 and got["perplexity"] > new.perplexity
