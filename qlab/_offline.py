"""Offline by design: qlab's models ship in PyPI packages, and no library may reach for a hub.

Imported first by ``qlab/__init__``. Libraries try the hub on their own: bitsandbytes 0.50, on
CPUs with AVX512-BF16, asks for an optional ``kernels-community`` CPU kernel when it is imported
(through the ``kernels`` package that transformers depends on). ``HF_HUB_OFFLINE=1``
(huggingface_hub's documented switch) makes every such attempt fail at once, without opening a
connection. It is a default: set ``HF_HUB_OFFLINE=0`` before importing qlab to allow hub
downloads in your own code. README: "Offline by design".

OpenVINO and NNCF ship a telemetry client (``openvino-telemetry``, Google Analytics 4) that is *on*
unless a consent file in the home directory says otherwise: ``import openvino`` sends an "import"
event (``openvino/tools/ovc/__init__.py``), ``import nncf`` starts a client, ``ov.convert_model``
and every NNCF call send more. The documented opt-out, ``opt_in_out --opt_out``, writes
``~/intel/openvino_telemetry`` *and sends an opt-out event* (``force_send=True``), so qlab cannot
use it offline, nor should a library edit a learner's home directory; the client's only other
switch is the generic ``CI`` variable, which other tools read too. qlab therefore takes the
fallback both packages were written with: when ``openvino_telemetry`` cannot be imported, ovc
uses ``openvino.tools.ovc.telemetry_stub`` and NNCF its ``NNCFTelemetryStub`` ("No telemetry will
be sent"). Before anything imports OpenVINO, ``sys.modules["openvino_telemetry"]`` is set to
``None`` (Python's documented way to make an import fail). Set ``QLAB_OPENVINO_TELEMETRY=1``
before importing qlab to leave the client alone. ``tests/test_offline.py`` imports openvino and
nncf, compresses and runs a model with every socket refused (in forked children too, where the
client sends from) and checks that nothing tried to connect, and that the probe does see the
client when it is left on.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("QLAB_OPENVINO_TELEMETRY") != "1" and "openvino_telemetry" not in sys.modules:
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # OpenVINO/NNCF: telemetry stubs

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
