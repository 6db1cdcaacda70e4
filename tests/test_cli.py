"""The qlab command end to end, with tiny windows."""

from __future__ import annotations

import json

from qlab.cli import main
from tests.quantize._fixtures import single_thread  # noqa: F401  (fixture)


def test_compare_end_to_end(tmp_path, capsys):
    out, js = tmp_path / "pareto.png", tmp_path / "rows.json"
    rc = main(["compare", "--model", "smollm2-135m", "--formats", "q8_0,q4_0", "--windows", "1", "--window", "32",
               "--out", str(out), "--cache-dir", str(tmp_path), "--json", str(js)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    head = next(line for line in text.splitlines() if line.startswith("format"))
    assert all(c in head for c in ("bits/weight", "MB", "perplexity", "KL", "top-1"))
    assert "q8_0" in text and "q4_0" in text and "f32 (reference)" in text
    assert out.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(js.read_text())["rows"]
    assert [r["format"] for r in rows] == ["f32 (reference)", "q8_0", "q4_0"]
    assert rows[1]["bits_per_weight"] < 8.6 and rows[2]["bits_per_weight"] < 4.6


def test_compare_writes_kl_reports(tmp_path, capsys):
    """--protocol llama-perplexity and --report: one KL report per format, JSON or CSV."""
    import csv

    js, cs = tmp_path / "kl.json", tmp_path / "kl.csv"
    args = ["compare", "--formats", "q4_0", "--windows", "2", "--window", "32", "--out", "", "--cache-dir", str(tmp_path),
            "--protocol", "llama-perplexity"]  # fmt: skip
    assert main([*args, "--report", str(js)]) == 0
    assert "llama-perplexity" in capsys.readouterr().out
    rep = json.loads(js.read_text())["q4_0"]
    assert rep["protocol"] == {"protocol": "llama-perplexity", "window": 32, "windows": 2}
    s = rep["statistics"]
    assert s["n_tokens"] == 2 * (32 - 1 - 16) == len(rep["tokens"]["kl"])
    assert 0 < s["kl"] and s["kl_dist"]["min"] <= s["kl_dist"]["median"] <= s["kl_dist"]["max"]
    assert main([*args, "--report", str(cs)]) == 0
    rows = list(csv.DictReader(cs.open()))
    assert {r["format"] for r in rows} == {"q4_0"} and float(next(r for r in rows if r["statistic"] == "kl")["value"]) == s["kl"]
    assert main([*args, "--report", str(tmp_path / "kl.txt")]) == 2
    assert ".json or .csv" in capsys.readouterr().err


def test_errors_and_quantize(capsys):
    assert main(["compare", "--formats", "q9_9", "--windows", "1", "--window", "8", "--out", "", "--no-cache"]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert main(["quantize", "--model", "digits-cnn", "--recipe", "int8"]) == 0
    assert "int8" in capsys.readouterr().out


def test_compare_in_llamacpp(tmp_path, capsys):
    js = tmp_path / "rows.json"
    rc = main(["compare", "--backend", "llamacpp", "--formats", "q8_0,q4_0", "--windows", "1", "--window", "64",
               "--out", str(tmp_path / "p.png"), "--json", str(js)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "run by llama.cpp" in text and "q4_0" in text
    rows = json.loads(js.read_text())["rows"]
    assert [r["format"] for r in rows] == ["f32 (reference)", "q8_0", "q4_0"]
    ref, q8, q4 = rows
    # measured in llama.cpp against qlab's float model: 8-bit is close, 4-bit further away
    assert 0 < q8["kl"] < q4["kl"] and q4["top1"] < 1.0
    assert abs(q8["perplexity"] / ref["perplexity"] - 1) < 0.05
    assert 8.0 < q8["bits_per_weight"] < 8.6 and q4["mb"] < q8["mb"]


def test_compare_backend_errors(capsys):
    assert main(["compare", "--backend", "llamacpp", "--formats", "nf4", "--windows", "1", "--window", "8"]) == 2
    assert "llama.cpp cannot run" in capsys.readouterr().err
    assert main(["compare", "--backend", "torch_native", "--model", "digits-cnn", "--formats", "int8"]) == 2
    assert "own schemes" in capsys.readouterr().err


def test_compare_runtime_backend(tmp_path, capsys):
    out = tmp_path / "bars.png"
    rc = main(["compare", "--backend", "torch_native", "--model", "digits-cnn", "--repeat", "2", "--batch-size", "16",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "fp32 (reference)" in text and "torch_native" in text and "x float" in text
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_passive_openmp_only_before_torch_and_never_over_the_user():
    """OMP_WAIT_POLICY=PASSIVE is set by the qlab command (issue 13 item 4) only when torch is not
    loaded yet (OpenMP reads it once) and the user did not choose a policy."""
    import os
    import subprocess
    import sys

    from qlab.cli import passive_openmp

    probe = ("import os, sys; from qlab.cli import passive_openmp; r = passive_openmp(); "
             "import torch; print(r, os.environ.get('OMP_WAIT_POLICY'))")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda e: subprocess.run([sys.executable, "-c", probe], env=e, capture_output=True, text=True, check=True)  # noqa: E731
    assert run(env).stdout.split() == ["True", "PASSIVE"]
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}).stdout.split() == ["False", "ACTIVE"]
    import torch  # noqa: F401  (loaded here: too late to change the policy of this process)

    before = os.environ.get("OMP_WAIT_POLICY")
    assert passive_openmp() is False and os.environ.get("OMP_WAIT_POLICY") == before
