"""Plots and ipywidgets panels for the lessons (matplotlib; widgets imported lazily)."""

from .pareto import pareto_front, plot_pareto
from .plots import plot_error_histogram
from .tour import formats_tour, tour_state

__all__ = ["plot_error_histogram", "formats_tour", "tour_state", "pareto_front", "plot_pareto"]
