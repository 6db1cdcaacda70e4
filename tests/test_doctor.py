"""``qlab doctor``: the lock check, the CPU and build checks, and the real smoke tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qlab import doctor
from qlab.cli import main


def test_lock_is_read_and_matches_this_environment() -> None:
    pins = doctor.read_lock()
    assert len(pins) > 100 and pins["torch"] == "2.13.0" and "llama-cpp-python" in pins
    # the test environment is installed from the lock (make install / .ci/run)
    assert doctor.lock_mismatches(pins) == []


def test_mismatches_are_reported() -> None:
    bad = doctor.lock_mismatches({"numpy": "0.0.1", "no-such-package-for-qlab": "1.0", "torch": "2.13.0+cpu"})
    assert bad[0] == "no-such-package-for-qlab: missing, lock 1.0"
    assert bad[1].startswith("numpy: installed ") and bad[1].endswith(", lock 0.0.1")
    assert len(bad) == 2  # torch 2.13.0+cpu is 2.13.0: local labels are ignored


def test_llama_build_flags_are_judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert doctor._llama_build().status == "WARN"  # unknown flags
    (tmp_path / ".qlab-llama-build").write_text("llama-cpp-python==0.3.36 -DGGML_NATIVE=ON\n")
    native = doctor._llama_build()
    assert native.status == "WARN" and "native" in native.detail and "portable" in native.fix
    (tmp_path / ".qlab-llama-build").write_text("llama-cpp-python==0.3.36 -DGGML_NATIVE=OFF -DGGML_AVX2=ON\n")
    assert doctor._llama_build().status == "ok"


def test_cpu_flags_are_read() -> None:
    flags = doctor.cpu_flags()
    if Path("/proc/cpuinfo").is_file():
        assert "sse2" in flags or "fp" in flags  # every x86-64 has SSE2; aarch64 lists fp


@pytest.mark.slow
def test_doctor_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    """Every runtime's real smoke test passes on a machine installed by `make install`."""
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = ["python", "packages", "cpu", "llama.cpp build", "runtimes import", "llama.cpp", "onnxruntime",
             "bitsandbytes", "torch.ao int8", "openvino", "browser"]  # fmt: skip
    assert [line[7:25].strip() for line in out[:-1]] == names
    assert all(line.startswith(("[  ok]", "[WARN]")) for line in out[:-1]), out
    assert out[-1] == "qlab doctor: all good"


def test_openvino_smoke_test() -> None:
    """The OpenVINO check runs in seconds and its verdict is one line."""
    check = doctor._timed("openvino", doctor._openvino, "fix")
    assert check.status == "ok", check.line()
    assert "int4_sym" in check.detail and "\n" not in check.line()


def test_doctor_without_smoke_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--no-smoke"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6
