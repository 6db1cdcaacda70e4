"""No library reaches for a model hub while qlab runs (README, "Offline by design").

Run in a fresh interpreter, because the attempt happens at import time: bitsandbytes 0.50 asks the
hub for an optional ``kernels-community`` CPU kernel when it is imported on an AVX512-BF16 CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import socket
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:2] or args[:1])
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
    print("attempts", attempts)
    """
)


def test_importing_and_running_reaches_for_no_hub() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "attempts []"
    assert "kernels-community" not in out.stderr and "offline mode" not in out.stderr, out.stderr


def test_the_switch_is_a_default_the_user_can_override() -> None:
    code = "import os, qlab; print(os.environ['HF_HUB_OFFLINE'])"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "1"
    env["HF_HUB_OFFLINE"] = "0"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip() == "0"
