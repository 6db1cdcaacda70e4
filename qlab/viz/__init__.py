"""Plots and ipywidgets panels for the lessons (matplotlib; widgets imported lazily)."""

from .blocks import block_table, mix_panel, mix_state
from .capstone import capstone_panel, capstone_state, plot_capstone
from .deploy import deploy_panel, deploy_state
from .dynamic import token_panel, token_state
from .gptq import capture_layer, layer_errors, layer_panel, methods_rows, methods_text, versus_rtn
from .granularity import granularity_panel, granularity_state
from .linear import linear_panel, linear_state
from .lowbits import lowbits_panel, lowbits_state
from .numberline import format_facts, grid, numberline_panel, numberline_state
from .outliers import int8_decomposition_state, smoothquant_panel, smoothquant_state
from .pareto import pareto_front, plot_pareto
from .plots import plot_error_histogram
from .ptq import observer_panel, observer_state
from .qat import ste_panel, ste_state
from .size import size_panel, size_state
from .tour import formats_tour, tour_state

__all__ = [
    "plot_error_histogram", "formats_tour", "tour_state", "pareto_front", "plot_pareto",
    "size_panel", "size_state", "linear_panel", "linear_state", "granularity_panel", "granularity_state",
    "numberline_panel", "numberline_state", "format_facts", "grid", "mix_panel", "mix_state", "block_table",
    "capstone_panel", "capstone_state", "plot_capstone",
    "layer_panel", "layer_errors", "capture_layer", "methods_rows", "methods_text", "versus_rtn",
    "observer_panel", "observer_state", "token_panel", "token_state", "ste_panel", "ste_state",
    "deploy_panel", "deploy_state", "lowbits_panel", "lowbits_state",
    "smoothquant_panel", "smoothquant_state", "int8_decomposition_state",
]  # fmt: skip
