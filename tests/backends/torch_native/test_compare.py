"""The backend comparison table and its bar plot (qlab.backends.compare), on digits-cnn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pytest
import torch

from qlab.backends import bitsandbytes as bnbb
from qlab.backends import onnxruntime as ortb
from qlab.backends import torch_native as tn
from qlab.backends.compare import (
    BackendTable,
    backend_models,
    batches,
    compare,
    measure_latency,
    plot_backends,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def table(digits: Any, tmp_path_factory: pytest.TempPathFactory) -> BackendTable:
    cal = batches(digits, 64, 32)
    d = tmp_path_factory.mktemp("onnx")
    models = [tn.quantize_static(digits, cal, observer="minmax"), ortb.float_session(digits, d),
              ortb.quantize_static(digits, cal, method="percentile", directory=d), bnbb.quantize(digits, "int8")]
    return compare(digits, models, repeat=3, threads=1)


def test_table_rows(table: BackendTable, digits: Any) -> None:
    assert [r["backend"] for r in table.rows] == ["torch", "torch_native", "onnxruntime", "onnxruntime",
                                                  "bitsandbytes"]
    ref = table.rows[0]
    assert ref["latency_ratio"] == 1.0 and ref["accuracy"] == pytest.approx(digits.evaluate()["accuracy"])
    assert table.metrics == ["accuracy"]
    for r in table.rows:
        assert r["latency_ms"] > 0 and r["latency_ratio"] == pytest.approx(r["latency_ms"] / ref["latency_ms"])
        assert 0.9 < r["accuracy"] <= 1.0
    # int8 weights (+ scales): under a third of the fp32 bytes for the static int8 models
    for r in table.rows[1:4:2]:
        assert r["weight_bytes"] < 0.3 * ref["weight_bytes"] and r["disk_bytes"] < 0.4 * ref["disk_bytes"]
    text = table.table()
    assert "disk MB" in text and "x float" in text and "static W8A8" in text
    assert str(table).startswith("digits-cnn")


def test_plot(table: BackendTable, tmp_path: Path) -> None:
    fig = plot_backends(table, path=tmp_path / "backends.png")
    assert len(fig.axes) == 3 and (tmp_path / "backends.png").stat().st_size > 1000
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][0] == "torch: fp32 (reference)"
    fig2 = table.plot(metrics=["weight_bytes"])
    assert len(fig2.axes) == 1


def test_measure_latency_is_round_robin() -> None:
    calls: list[str] = []
    lat = measure_latency({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=3, warmup=1)
    assert calls == ["a", "b"] * 4 and set(lat) == {"a", "b"}


def test_timings_quartiles_and_ratio() -> None:
    from qlab.core.latency import Timings, measure_timings

    t = Timings({"fast": [1.0, 2.0, 3.0, 4.0, 5.0], "slow": [2.0, 6.0, 6.0, 8.0, 20.0]})
    assert t.median("fast") == 3.0 and t.spread("fast") == (2.0, 4.0)
    assert t.ratio("fast", "slow") == (2.0, 2.0, 3.0)  # per-round slow/fast: 2, 3, 2, 2, 4
    assert t.text("fast", unit=1.0, suffix="s") == "3 s (IQR 2-4)"
    with pytest.raises(KeyError, match="timed: fast, slow"):
        t.median("other")
    with pytest.raises(ValueError, match="repeat"):
        measure_timings({"a": lambda: None}, repeat=0)
    with pytest.raises(ValueError, match="empty"):
        measure_timings({})


def test_bad_input(digits: Any) -> None:
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        backend_models(digits, "tensorrt")
    with pytest.raises(ValueError, match="at least one"):
        compare(digits, [])
    with pytest.raises(ValueError, match="split"):
        batches(digits, 8, 8, "train")
    other = type(digits)("detector", torch.nn.Linear(2, 2), None, "object-detector", None)
    with pytest.raises(ValueError, match="no example batches"):
        batches(other)
