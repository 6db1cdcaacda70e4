"""KL divergence and top-1 agreement against a float reference: the evaluator of :mod:`qlab.core.lm`
under its ``qlab.eval`` names (``reference`` once, then ``compare`` per quantized model)."""

from ..core.lm import Reference, compare, kl_divergence, reference, summarize

__all__ = ["Reference", "compare", "kl_divergence", "reference", "summarize"]
