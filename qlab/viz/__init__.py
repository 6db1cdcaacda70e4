"""Plots and ipywidgets panels for the lessons (matplotlib; widgets imported lazily)."""

from .plots import plot_error_histogram
from .tour import formats_tour, tour_state

__all__ = ["plot_error_histogram", "formats_tour", "tour_state"]
