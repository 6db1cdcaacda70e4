"""The statistics of ``llama-perplexity --kl-divergence``, from token-level arrays.

:class:`KLReport` is computed from four arrays over the scored tokens -- the quantized model's
NLL, the base (float) model's NLL, KL(base || Q) and whether both models' top-1 token agree --
whichever runtime produced them (qlab's simulation or llama.cpp). The formulas are those of
``kl_divergence()`` in llama.cpp's ``tools/perplexity/perplexity.cpp``:

* ``mean_and_uncertainty(sum, sum2, n)``: ``f = sum / n``, ``σ = sqrt((sum2 / n - f²) / (n - 1))``
  (0 when the variance is not positive or ``n <= 10``): the standard error of a mean;
* PPL(Q) = exp(mean NLL) ± PPL · σ(NLL), the same for PPL(base);
* ``covariance(a, b, ab, n) = (Σab / n - (Σa / n)(Σb / n)) / (n - 1)`` (0 when ``n < 10``);
  Cor(ln PPL(Q), ln PPL(base)) = cov / (σ_Q σ_base) -- over tokens: with the ``1 / (n - 1)`` of
  both, it equals the Pearson correlation of the two per-token NLLs;
* ln(PPL(Q)/PPL(base)) = mean NLL(Q) - mean NLL(base) ± sqrt(σ_Q² + σ_base² - 2 cov); PPL(Q)/PPL(base)
  = exp of it, ± ratio · σ; PPL(Q) - PPL(base) ± sqrt(σ_PPL(Q)² + σ_PPL(base)² - 2 PPL(Q) PPL(base) cov);
* KLD mean ± σ; maximum, the 99.9 / 99 / 95 / 90 % percentiles, median, 10 / 5 / 1 / 0.1 %, minimum;
* Δp = exp(-NLL(Q)) - exp(-NLL(base)), the change of the probability of the correct token:
  mean ± σ and the percentiles (plus 75 / 25 %); RMS Δp = sqrt(mean Δp²) ± σ(Δp²) / (2 RMS);
* "same top p" = fraction of tokens whose argmax agrees ± sqrt(p (1 - p) / (n - 1)) (binomial).

Percentiles are llama.cpp's: values sorted in float32, ``p = fraction * (n - 1)`` in float32,
linear interpolation between ``values[int(p)]`` and the next; the median is the middle value or
the mean of the two middle values.

What is not reproduced: llama.cpp stores the base model's log-probabilities as 16-bit codes over
a 16-nat range and skips vocabulary terms with log p_base <= -16 in the KL sum; qlab keeps the base
log-probabilities in float (16 or 32 bit) and sums every term (the exact KL).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: percentiles printed for KLD (after its maximum) and for Δp, as in perplexity.cpp
KL_PERCENTILES = (99.9, 99.0, 95.0, 90.0, 10.0, 5.0, 1.0, 0.1)
DP_PERCENTILES = (99.9, 99.0, 95.0, 90.0, 75.0, 25.0, 10.0, 5.0, 1.0, 0.1)


def mean_and_uncertainty(values: np.ndarray) -> tuple[float, float]:
    """perplexity.cpp's ``mean_and_uncertainty`` of the sums of ``values`` and ``values²``."""
    n = len(values)
    if n < 1:
        return 0.0, 0.0
    v = np.asarray(values, dtype=np.float64)
    f = v.sum() / n
    df = (v * v).sum() / n - f * f
    return float(f), float(math.sqrt(df / (n - 1))) if df > 0 and n > 10 else 0.0


def covariance(a: np.ndarray, b: np.ndarray) -> float:
    """perplexity.cpp's ``covariance``: of the two means, 0 below 10 values."""
    n = len(a)
    if n < 10:
        return 0.0
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(((a * b).sum() / n - (a.sum() / n) * (b.sum() / n)) / (n - 1))


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """perplexity.cpp's ``percentile`` of float32 values sorted ascending (float32 arithmetic)."""
    v = np.asarray(sorted_values, dtype=np.float32)
    f = np.float32(fraction)
    if f <= 0:
        return float(v[0])
    if f >= 1:
        return float(v[-1])
    p = f * np.float32(len(v) - 1)
    ip = int(p)
    p = np.float32(p - np.float32(ip))
    return float((np.float32(1) - p) * v[ip] + p * v[min(ip + 1, len(v) - 1)])


def median(sorted_values: np.ndarray) -> float:
    v = np.asarray(sorted_values, dtype=np.float32)
    n = len(v)
    return float(np.float32(0.5) * (v[n // 2] + v[n // 2 - 1]) if n % 2 == 0 else v[n // 2])


def _distribution(values: np.ndarray, percentiles: tuple[float, ...]) -> dict[str, float]:
    s = np.sort(np.asarray(values, dtype=np.float32))
    out = {"max": float(s[-1])}
    out.update({f"{q:.1f}%": percentile(s, q / 100) for q in percentiles if q > 50})
    out["median"] = median(s)
    out.update({f"{q:.1f}%": percentile(s, q / 100) for q in percentiles if q < 50})
    out["min"] = float(s[0])
    return out


@dataclass
class KLReport:
    """``llama-perplexity --kl-divergence``'s statistics of a quantized model ``Q`` against a base.

    Token-level arrays (one entry per scored token, windows in order): ``nll`` (Q), ``nll_base``,
    ``kl`` (KL(base || Q), nats), ``same_top`` (bool), ``dp`` (Δp, derived), ``token`` (the
    predicted token id), ``window`` and ``position`` (where the token sits in :attr:`ids`).
    ``ids``: the token windows ``(windows, window)`` (for the text around a token).
    """

    nll: np.ndarray
    nll_base: np.ndarray
    kl: np.ndarray
    same_top: np.ndarray
    token: np.ndarray
    window: np.ndarray
    position: np.ndarray
    ids: np.ndarray | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    dp: np.ndarray = field(init=False)
    stats: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.nll)
        for name in ("nll_base", "kl", "same_top", "token", "window", "position"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, nll has {n}: one per scored token")
        if n < 2:
            raise ValueError(f"a KL report needs at least 2 scored tokens, got {n}")
        self.nll = np.asarray(self.nll, np.float64)
        self.nll_base = np.asarray(self.nll_base, np.float64)
        self.kl = np.asarray(self.kl, np.float64)
        self.same_top = np.asarray(self.same_top, bool)
        self.dp = np.exp(-self.nll) - np.exp(-self.nll_base)
        self.stats = self._statistics()

    def _statistics(self) -> dict[str, Any]:
        n = len(self.nll)
        lq, sq = mean_and_uncertainty(self.nll)
        lb, sb = mean_and_uncertainty(self.nll_base)
        cov = covariance(self.nll, self.nll_base)
        ppl, ppl_base = math.exp(lq), math.exp(lb)
        ratio_sigma = math.sqrt(max(sq * sq + sb * sb - 2 * cov, 0.0))
        ratio = math.exp(lq - lb)
        diff_sigma = math.sqrt(max((ppl * sq) ** 2 + (ppl_base * sb) ** 2 - 2 * ppl * ppl_base * cov, 0.0))
        kl, kl_sigma = mean_and_uncertainty(self.kl)
        dp, dp_sigma = mean_and_uncertainty(self.dp)
        mse, mse_sigma = mean_and_uncertainty(self.dp**2)
        rms = math.sqrt(mse)
        same = float(self.same_top.sum()) / n
        return {
            "n_tokens": n,
            "ppl": ppl, "ppl_sigma": ppl * sq, "ppl_base": ppl_base, "ppl_base_sigma": ppl_base * sb,
            "cor_ln_ppl": cov / (sq * sb) if sq > 0 and sb > 0 else float("nan"),
            "ln_ppl_ratio": lq - lb, "ln_ppl_ratio_sigma": ratio_sigma,
            "ppl_ratio": ratio, "ppl_ratio_sigma": ratio * ratio_sigma,
            "ppl_diff": ppl - ppl_base, "ppl_diff_sigma": diff_sigma,
            "kl": kl, "kl_sigma": kl_sigma, "kl_dist": _distribution(self.kl, KL_PERCENTILES),
            "dp": dp, "dp_sigma": dp_sigma, "dp_dist": _distribution(self.dp, DP_PERCENTILES),
            "rms_dp": rms, "rms_dp_sigma": 0.5 / rms * mse_sigma if rms > 0 else 0.0,
            "same_top": same, "same_top_sigma": math.sqrt(same * (1 - same) / (n - 1)),
        }  # fmt: skip

    def metrics(self) -> dict[str, float]:
        """The compact figures (the keys of :data:`qlab.core.lm.METRICS`)."""
        s = self.stats
        return {
            "perplexity": s["ppl"], "reference_perplexity": s["ppl_base"], "delta_perplexity": s["ppl_diff"],
            "nll": float(self.nll.mean()), "kl": s["kl"], "kl_median": s["kl_dist"]["median"],
            "kl_p99": s["kl_dist"]["99.0%"], "kl_max": s["kl_dist"]["max"], "top1": s["same_top"], "n_tokens": s["n_tokens"],
        }  # fmt: skip

    def worst(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` tokens of largest KL: ``{kl, dp, token, window, position}`` each."""
        order = np.argsort(-self.kl, kind="stable")[:k]
        return [{"kl": float(self.kl[i]), "dp": float(self.dp[i]), "token": int(self.token[i]),
                 "window": int(self.window[i]), "position": int(self.position[i])} for i in order]  # fmt: skip

    def __str__(self) -> str:
        s, pc = self.stats, 100.0
        lines = [
            f"Mean PPL(Q)                   : {s['ppl']:10.6f} ± {s['ppl_sigma']:10.6f}",
            f"Mean PPL(base)                : {s['ppl_base']:10.6f} ± {s['ppl_base_sigma']:10.6f}",
            f"Cor(ln(PPL(Q)), ln(PPL(base))): {pc * s['cor_ln_ppl']:6.2f}%",
            f"Mean ln(PPL(Q)/PPL(base))     : {s['ln_ppl_ratio']:10.6f} ± {s['ln_ppl_ratio_sigma']:10.6f}",
            f"Mean PPL(Q)/PPL(base)         : {s['ppl_ratio']:10.6f} ± {s['ppl_ratio_sigma']:10.6f}",
            f"Mean PPL(Q)-PPL(base)         : {s['ppl_diff']:10.6f} ± {s['ppl_diff_sigma']:10.6f}",
            "", f"Mean    KLD: {s['kl']:10.6f} ± {s['kl_sigma']:10.6f}",
        ]  # fmt: skip
        lines += [f"{_label(q, 'KLD')}: {v:10.6f}" for q, v in s["kl_dist"].items()]
        lines += ["", f"Mean    Δp: {pc * s['dp']:6.3f} ± {pc * s['dp_sigma']:5.3f} %"]
        lines += [f"{_label(q, 'Δp')}: {pc * v:6.3f}%" for q, v in s["dp_dist"].items()]
        lines += [f"RMS Δp    : {pc * s['rms_dp']:6.3f} ± {pc * s['rms_dp_sigma']:5.3f} %",
                  f"Same top p: {pc * s['same_top']:6.3f} ± {pc * s['same_top_sigma']:5.3f} %"]  # fmt: skip
        return "\n".join(lines)

    def to_dict(self, tokens: bool = True) -> dict[str, Any]:
        """The statistics, the protocol and (``tokens=True``) the token-level arrays, JSON-able."""
        out: dict[str, Any] = {"protocol": self.protocol, "statistics": self.stats}
        if tokens:
            out["tokens"] = {name: getattr(self, name).tolist() for name in
                             ("window", "position", "token", "nll", "nll_base", "kl", "dp", "same_top")}  # fmt: skip
        return out

    def statistic_rows(self) -> list[tuple[str, float, float | None]]:
        """``(statistic, value, σ or None)`` for every statistic (KLD / Δp percentiles flattened)."""
        s = self.stats
        rows: list[tuple[str, float, float | None]] = [("n_tokens", s["n_tokens"], None)]
        for key in ("ppl", "ppl_base", "cor_ln_ppl", "ln_ppl_ratio", "ppl_ratio", "ppl_diff", "kl", "dp", "rms_dp", "same_top"):
            rows.append((key, s[key], s.get(f"{key}_sigma")))
            if key in ("kl", "dp"):
                rows += [(f"{key} {q}", v, None) for q, v in s[f"{key}_dist"].items()]
        return rows

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the report atomically: ``.json`` (statistics, protocol, token arrays) or ``.csv``
        (``statistic,value,sigma``, one row per statistic)."""
        save_reports(path, {"": self})


def save_reports(path: str | os.PathLike[str], reports: dict[str, KLReport]) -> None:
    """Write reports keyed by a label (a format name) atomically (``qlab.files``): ``.json``
    (``{label: to_dict()}``, or one report's dict for the label ``""``) or ``.csv`` (columns
    ``format,statistic,value,sigma``; no ``format`` column for the label ``""``)."""
    from ..files import write_text

    suffix = os.fspath(path).rsplit(".", 1)[-1].lower()
    if suffix not in ("json", "csv"):
        raise ValueError(f"path={os.fspath(path)!r}: a KL report is written as .json or .csv")
    single = list(reports) == [""]
    if suffix == "json":
        blob = reports[""].to_dict() if single else {k: r.to_dict() for k, r in reports.items()}
        write_text(path, json.dumps(blob, indent=1) + "\n")
        return
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["statistic", "value", "sigma"] if single else ["format", "statistic", "value", "sigma"])
    for label, rep in reports.items():
        for k, v, e in rep.statistic_rows():
            row = [k, repr(float(v)), "" if e is None else repr(float(e))]
            w.writerow(row if single else [label, *row])
    write_text(path, buf.getvalue())


def _label(q: str, what: str) -> str:
    if q in ("max", "min"):
        return f"{'Maximum' if q == 'max' else 'Minimum'} {what}"
    if q == "median":
        return f"Median  {what}"
    return f"{q:>5}   {what}"


__all__ = ["DP_PERCENTILES", "KLReport", "KL_PERCENTILES", "covariance", "mean_and_uncertainty", "median", "percentile",
           "save_reports"]
