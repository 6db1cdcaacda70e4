"""Size-vs-accuracy Pareto plots (the front and its plot live in :mod:`qlab.core.pareto`)."""

from ..core.pareto import pareto_front, plot_pareto

__all__ = ["pareto_front", "plot_pareto"]
