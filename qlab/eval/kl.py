"""KL divergence and top-1 agreement against a float reference: the evaluator of :mod:`qlab.core.lm`
under its ``qlab.eval`` names (``reference`` once, then ``compare`` -- the compact figures -- or
``kl_report`` -- every statistic of ``llama-perplexity --kl-divergence`` -- per quantized model)."""

from ..core.klreport import KLReport
from ..core.lm import Reference, compare, kl_divergence, kl_report, reference, summarize

__all__ = ["KLReport", "Reference", "compare", "kl_divergence", "kl_report", "reference", "summarize"]
