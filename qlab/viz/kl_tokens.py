"""What a mean KL hides: the distribution of per-token KL and the tokens where a quantized model
disagrees most (from a :class:`qlab.core.klreport.KLReport`, whose token-level arrays say where each
scored token sits in the reference's windows)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.klreport import KLReport


def worst_tokens(report: KLReport, tokenizer: Any, k: int = 8, context: int = 8) -> list[dict[str, Any]]:
    """The ``k`` tokens of largest KL with the ``context`` tokens before them (``⏎`` for newlines):
    ``{kl, dp, context, token}``; ``dp`` is the change of the correct token's probability."""
    if report.ids is None:
        raise ValueError("the report has no token ids (ids=None): build it with qlab.eval.kl_report")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    rows = []
    for w in report.worst(k):
        ids = report.ids[w["window"]]
        pos = w["position"]
        before = tokenizer.decode([int(t) for t in ids[max(0, pos - context) : pos]])
        rows.append({"kl": w["kl"], "dp": w["dp"], "context": "…" + before.replace("\n", "⏎")[-48:],
                     "token": tokenizer.decode([int(ids[pos])]).replace("\n", "⏎")})  # fmt: skip
    return rows


def plot_kl_distribution(ax: Any, report: KLReport, label: str = "", bins: int = 60) -> Any:
    """Histogram of per-token KL on a log x-axis, with the mean and the 99th percentile marked."""
    kl = np.asarray(report.kl, dtype=np.float64)
    lo = max(float(kl[kl > 0].min()) if (kl > 0).any() else 1e-6, 1e-6)
    edges = np.logspace(np.log10(lo), np.log10(max(float(kl.max()), lo * 10)), bins)
    ax.hist(np.clip(kl, lo, None), bins=edges, color="C0", alpha=0.8, label=label or None)
    ax.set_xscale("log")
    s = report.stats
    ax.axvline(s["kl"], color="C3", lw=1.5, label=f"mean {s['kl']:.3f}")
    ax.axvline(s["kl_dist"]["99.0%"], color="C1", lw=1.2, ls="--", label=f"99% {s['kl_dist']['99.0%']:.2f}")
    ax.set_xlabel("per-token KL(float || quantized), nats (log scale)")
    ax.set_ylabel("tokens")
    ax.legend(fontsize=8)
    return ax


__all__ = ["plot_kl_distribution", "worst_tokens"]
