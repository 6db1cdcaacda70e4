"""The shared floor every package above ``qlab.formats`` and ``qlab.models`` builds on.

* :mod:`.model` -- :class:`Loaded`, the type of what :func:`qlab.models.load` returns, and
  :func:`torch_module` to unwrap it;
* :mod:`.metrics` -- SQNR and the other error metrics (one definition);
* :mod:`.text` -- the WikiText-2 test text and sentences cut from it;
* :mod:`.lm` -- the one language-model evaluator: perplexity, KL divergence, top-1 agreement;
* :mod:`.protocols` -- the perplexity protocols (full-window, llama-perplexity): windows, scored positions;
* :mod:`.klreport` -- :class:`KLReport`, the statistics of ``llama-perplexity --kl-divergence``;
* :mod:`.calibration` -- calibration data as batches, real example batches of a zoo model;
* :mod:`.report` -- :class:`Report`, the base of every quantization report, and the table renderer;
* :mod:`.fakequant` -- one fake-quantized ``nn.Linear`` and the helper that puts it in place;
* :mod:`.llm_int8` -- the LLM.int8() matmul, simulated;
* :mod:`.pareto` -- the size-vs-accuracy Pareto front and its plot;
* :mod:`.latency` -- round-robin latency measurement.
"""

from .lm import Reference, compare, kl_divergence, reference
from .metrics import error_stats, sqnr_db, sqnr_from_power
from .model import Loaded, ModelLike, torch_module
from .pareto import higher_is_better, pareto_front
from .report import Report, format_table

__all__ = [
    "Loaded", "ModelLike", "Reference", "Report", "compare", "error_stats", "format_table", "higher_is_better",
    "kl_divergence", "pareto_front", "reference", "sqnr_db", "sqnr_from_power", "torch_module",
]  # fmt: skip
