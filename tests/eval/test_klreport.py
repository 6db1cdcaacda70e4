"""The KL report against a hand computation in numpy (independent of qlab's code), and the
protocols' window construction.

The hand computation follows llama.cpp's ``tools/perplexity/perplexity.cpp`` (``kl_divergence``)
written the textbook way: numpy's log-softmax, ``np.std`` for the standard errors
``sqrt(var / (n - 1))``, ``np.corrcoef`` for the correlation, ``np.percentile`` (linear
interpolation at ``q (n - 1)``, what ``percentile`` in perplexity.cpp does in float32), the
binomial standard error of the top-1 agreement.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qlab.core.klreport import KLReport
from qlab.core.lm import Reference, report_logits
from qlab.core.protocols import Protocol


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.fixture(params=["full-window", "llama-perplexity"])
def case(request: pytest.FixtureRequest) -> tuple[Protocol, np.ndarray, np.ndarray, np.ndarray]:
    """Random base and quantized logits (Q = base + noise) over 3 windows of 40 tokens, vocab 50."""
    proto = Protocol(request.param, window=40, windows=3)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 50, size=(3, 40))
    base = rng.normal(0, 2.0, size=(3, 40, 50)).astype(np.float32)
    q = (base + rng.normal(0, 0.7, size=base.shape)).astype(np.float32)
    return proto, ids, base, q


def _report(proto: Protocol, ids: np.ndarray, base: np.ndarray, q: np.ndarray) -> KLReport:
    f = proto.first
    lp = torch.log_softmax(torch.from_numpy(base[:, f:-1]), -1)
    nll = -lp.gather(2, torch.from_numpy(ids[:, f + 1 :, None]))[..., 0]
    ref = Reference("base", torch.from_numpy(ids), lp, nll, math.exp(nll.double().mean().item()), protocol=proto)
    return report_logits(ref, (torch.from_numpy(w) for w in q))


def test_report_matches_hand_computation(case: tuple[Protocol, np.ndarray, np.ndarray, np.ndarray]) -> None:
    proto, ids, base, q = case
    rep = _report(proto, ids, base, q)
    f = proto.first
    lb, lq = _log_softmax(base[:, f:-1]), _log_softmax(q[:, f:-1])
    tgt = ids[:, f + 1 :]
    nb = -np.take_along_axis(lb, tgt[..., None], -1)[..., 0].ravel()
    nq = -np.take_along_axis(lq, tgt[..., None], -1)[..., 0].ravel()
    kl = (np.exp(lb) * (lb - lq)).sum(-1).ravel()
    same = (lb.argmax(-1) == lq.argmax(-1)).ravel()
    n = len(nq)
    assert n == 3 * (39 - f) and rep.stats["n_tokens"] == n

    def se(x: np.ndarray) -> float:  # standard error of the mean, as perplexity.cpp
        return float(np.std(x) / math.sqrt(len(x) - 1))

    s, r = rep.stats, dict(rel=1e-5)
    assert s["ppl"] == pytest.approx(math.exp(nq.mean()), **r)
    assert s["ppl_sigma"] == pytest.approx(math.exp(nq.mean()) * se(nq), **r)
    assert s["ppl_base"] == pytest.approx(math.exp(nb.mean()), **r)
    assert s["ppl_base_sigma"] == pytest.approx(math.exp(nb.mean()) * se(nb), **r)
    assert s["cor_ln_ppl"] == pytest.approx(np.corrcoef(nq, nb)[0, 1], **r)
    cov = np.cov(nq, nb, ddof=0)[0, 1] / (n - 1)
    assert s["ln_ppl_ratio"] == pytest.approx(nq.mean() - nb.mean(), **r)
    assert s["ln_ppl_ratio_sigma"] == pytest.approx(math.sqrt(se(nq) ** 2 + se(nb) ** 2 - 2 * cov), **r)
    assert s["ln_ppl_ratio_sigma"] == pytest.approx(se(nq - nb), **r)  # the same thing, said otherwise
    assert s["kl"] == pytest.approx(kl.mean(), **r) and s["kl_sigma"] == pytest.approx(se(kl), **r)
    d = s["kl_dist"]
    assert d["max"] == pytest.approx(kl.max(), **r) and d["min"] == pytest.approx(kl.min(), **r)
    assert d["median"] == pytest.approx(np.median(kl), **r)
    for pct in (99.9, 99.0, 95.0, 90.0, 10.0, 5.0, 1.0, 0.1):
        assert d[f"{pct:.1f}%"] == pytest.approx(np.percentile(kl, pct), rel=1e-4), pct
    dp = np.exp(-nq) - np.exp(-nb)
    assert s["dp"] == pytest.approx(dp.mean(), **r) and s["dp_sigma"] == pytest.approx(se(dp), **r)
    for pct in (99.9, 99.0, 95.0, 90.0, 75.0, 25.0, 10.0, 5.0, 1.0, 0.1):
        assert s["dp_dist"][f"{pct:.1f}%"] == pytest.approx(np.percentile(dp, pct), rel=1e-4, abs=1e-6), pct
    rms = math.sqrt((dp**2).mean())
    assert s["rms_dp"] == pytest.approx(rms, **r)
    assert s["rms_dp_sigma"] == pytest.approx(se(dp**2) / (2 * rms), **r)
    p = same.mean()
    assert 0.3 < p < 1 and s["same_top"] == p
    assert s["same_top_sigma"] == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)), **r)
    # the token-level arrays stay on the report, and the compact figures agree with them
    np.testing.assert_allclose(rep.kl, kl, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(rep.token, tgt.ravel())
    assert rep.ids[rep.window[5], rep.position[5]] == rep.token[5]
    m = rep.metrics()
    assert m["kl"] == s["kl"] and m["top1"] == p and m["perplexity"] == s["ppl"] and m["n_tokens"] == n
    assert rep.worst(3)[0]["kl"] == pytest.approx(kl.max(), **r)


def test_report_files(case: tuple[Protocol, np.ndarray, np.ndarray, np.ndarray], tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv
    import json

    rep = _report(*case)
    rep.save(tmp_path / "r.json")
    back = json.loads((tmp_path / "r.json").read_text())
    assert back["statistics"]["kl"] == rep.stats["kl"] and len(back["tokens"]["kl"]) == rep.stats["n_tokens"]
    assert back["protocol"]["protocol"] == case[0].name
    rep.save(tmp_path / "r.csv")
    rows = {r["statistic"]: r for r in csv.DictReader((tmp_path / "r.csv").open())}
    assert float(rows["same_top"]["value"]) == rep.stats["same_top"] and float(rows["kl 99.0%"]["value"]) > 0
    assert "Same top p" in str(rep) and "Cor(ln(PPL(Q)), ln(PPL(base)))" in str(rep)
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        rep.save(tmp_path / "r.txt")


def test_protocol_windows() -> None:
    toks = np.arange(100, 400)
    full = Protocol("full-window", 8, 3)
    assert (full.first, full.scored) == (0, 7)
    np.testing.assert_array_equal(full.windows_of(toks, bos=1), toks[:24].reshape(3, 8))  # full-window: no BOS
    lp = Protocol("llama-perplexity", 8, 3)
    assert (lp.first, lp.scored, lp.n_tokens) == (4, 3, 9)
    np.testing.assert_array_equal(lp.windows_of(toks, bos=None), toks[:24].reshape(3, 8))
    # vocab adding BOS: BOS + text tokenized whole, then BOS in place of every chunk's first token
    with_bos = lp.windows_of(toks, bos=1)
    want = np.concatenate([[1], toks[:23]]).reshape(3, 8)
    want[:, 0] = 1
    np.testing.assert_array_equal(with_bos, want)
    with pytest.raises(ValueError, match="16 needed"):
        Protocol("llama-perplexity", 8, 1).windows_of(toks[:15], bos=None)  # llama.cpp wants 2 * n_ctx tokens
    with pytest.raises(ValueError, match="protocol='sliding'"):
        Protocol("sliding", 8, 3)
