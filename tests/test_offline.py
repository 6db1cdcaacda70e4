"""No library reaches for a model hub while qlab runs (README, "Offline by design").

Run in a fresh interpreter, because the attempt happens at import time: bitsandbytes 0.50 asks the
hub for an optional ``kernels-community`` CPU kernel when it is imported on an AVX512-BF16 CPU, and
NNCF starts OpenVINO's telemetry client when it is imported (qlab._offline keeps it off).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import os
    import socket
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:2] or args[:1])
        # also to a file: OpenVINO's telemetry sends from a forked child process
        with open(os.environ["QLAB_NET_LOG"], "a") as f:
            f.write(repr([a for a in args if isinstance(a, str | tuple)]) + "\\n")
        raise OSError("network access attempted")

    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    socket.socket.connect = refuse

    import qlab
    import torch
    import transformers
    from qlab.backends import bitsandbytes as bnbb

    q = bnbb.quantized_linear(torch.nn.Linear(64, 32), "nf4")
    with torch.inference_mode():
        q(torch.randn(2, 64))
    qlab.models.load("minilm-l6", progress=False)

    import numpy as np
    import openvino as ov
    import nncf
    from openvino import opset13 as ops
    from qlab.backends import openvino as ovb

    x = ops.parameter([-1, 64], np.float32, name="x")
    w = ops.constant(np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32))
    model = ov.Model([ops.matmul(x, w, False, False)], [x])
    data = nncf.Dataset([np.ones((2, 64), np.float32)])
    q = ovb.compress_weights_ir(model, "int4_asym", 16, all_layers=True, data=data, scale_estimation=True)
    y = ovb.compile_ir(q, threads=1)(np.ones((2, 64), np.float32))[0]
    assert y.shape == (2, 32) and ovb.weight_types(q) == {"u4": 1}
    print("attempts", attempts)
    """
)


def _run(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "NNCF_", "QLAB_OPENVINO"))}
    env.pop("CI", None)  # the telemetry client is off in CI anyway: test the learner's case
    log = tmp_path / "net.log"
    log.touch()
    env |= {"QLAB_NET_LOG": str(log), **extra}
    # the interpreter joins the telemetry sender's threads (and their child processes) at exit
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    return out, log.read_text()


def test_importing_and_running_reaches_for_no_hub(tmp_path: Path) -> None:
    out, log = _run(tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "attempts []" and log == ""
    assert "kernels-community" not in out.stderr and "offline mode" not in out.stderr, out.stderr


def test_the_probe_sees_openvino_telemetry(tmp_path: Path) -> None:
    """The negative control: with qlab's switch off, ``import openvino`` does try to connect (from the
    telemetry sender's child process), and the probe above records it."""
    out, log = _run(tmp_path, QLAB_OPENVINO_TELEMETRY="1")
    assert out.returncode == 0, out.stderr
    assert "443" in log, log


def test_the_switch_is_a_default_the_user_can_override() -> None:
    code = "import os, qlab; print(os.environ['HF_HUB_OFFLINE'])"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "1"
    env["HF_HUB_OFFLINE"] = "0"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "0"
