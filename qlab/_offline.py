"""Offline by design: qlab's models ship in PyPI packages, and no library may reach for a hub.

Imported first by ``qlab/__init__``. Libraries try the hub on their own: bitsandbytes 0.50, on
CPUs with AVX512-BF16, asks for an optional ``kernels-community`` CPU kernel when it is imported
(through the ``kernels`` package that transformers depends on). ``HF_HUB_OFFLINE=1``
(huggingface_hub's documented switch) makes every such attempt fail at once, without opening a
connection. It is a default: set ``HF_HUB_OFFLINE=0`` before importing qlab to allow hub
downloads in your own code. README: "Offline by design".
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# the loggers that announce the skipped hub kernel; bitsandbytes then uses its own CPU kernel,
# which is the one qlab measures and simulates
HUB_KERNEL_LOGGERS = ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub")


class NoHubKernelNotice(logging.Filter):
    """Drops the records about the optional hub kernel (they name ``kernels-community``); every
    other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


for _name in HUB_KERNEL_LOGGERS:
    logging.getLogger(_name).addFilter(NoHubKernelNotice())
