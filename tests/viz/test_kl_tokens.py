"""What a mean KL hides (qlab.viz.kl_tokens): the worst tokens with the text before them, decoded by
SmolLM2's real tokenizer, and the per-token KL histogram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qlab.core.klreport import KLReport  # noqa: E402
from qlab.models.smollm2 import gguf_tokenizer, smollm2_gguf  # noqa: E402
from qlab.viz.kl_tokens import plot_kl_distribution, worst_tokens  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return gguf_tokenizer(smollm2_gguf())


def _report(tok) -> KLReport:
    ids = np.array([tok("The London Borough of Hammersmith and Fulham\nis a borough")["input_ids"][:12]])
    n = ids.shape[1] - 1  # every token after the first scored
    kl = np.linspace(0.01, 0.2, n)
    kl[6] = 4.0  # one token far worse than the rest
    return KLReport(nll=np.full(n, 2.0), nll_base=np.full(n, 1.9), kl=kl, same_top=np.ones(n, bool),
                    token=ids[0, 1:], window=np.zeros(n, int), position=np.arange(1, n + 1), ids=ids)  # fmt: skip


def test_worst_token_and_its_context(tok):
    r = _report(tok)
    rows = worst_tokens(r, tok, k=3, context=4)
    assert [round(x["kl"], 3) for x in rows] == [4.0, 0.2, round(r.kl[-2], 3)]
    ids = r.ids[0]
    pos = int(r.position[6])
    assert rows[0]["token"] == tok.decode([int(ids[pos])]).replace("\n", "⏎")
    assert rows[0]["context"] == "…" + tok.decode([int(t) for t in ids[pos - 4 : pos]]).replace("\n", "⏎")
    assert rows[0]["dp"] == pytest.approx(np.exp(-2.0) - np.exp(-1.9))


def test_bad_arguments(tok):
    r = _report(tok)
    with pytest.raises(ValueError, match="k must be a positive int"):
        worst_tokens(r, tok, k=0)
    r.ids = None
    with pytest.raises(ValueError, match="no token ids"):
        worst_tokens(r, tok)


def test_histogram_marks_mean_and_p99(tok):
    r = _report(tok)
    fig, ax = plt.subplots()
    plot_kl_distribution(ax, r, label="test")
    assert ax.get_xscale() == "log"
    xs = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert xs == pytest.approx(sorted([r.stats["kl"], r.stats["kl_dist"]["99.0%"]]))
    assert sum(p.get_height() for p in ax.patches) == len(r.kl)
    plt.close(fig)
