"""Lesson 12's deployment map: every target the course names, each ran here or explained with a
reason, and the "ran here" rows carry numbers from the committed backend tables."""

from __future__ import annotations

from qlab.backends.compare import BACKENDS
from qlab.viz import deploy_map as dm

COURSE_TARGETS = {"ONNX Runtime", "llama.cpp", "OpenVINO", "Olive", "bitsandbytes", "torch.ao", "TensorRT", "MLX",
                  "QNN / AIMET", "TFLite / LiteRT"}


def test_every_target_is_ran_or_explained() -> None:
    assert {t["target"] for t in dm.TARGETS} == COURSE_TARGETS
    for t in dm.TARGETS:
        assert t["status"] in (dm.RAN, dm.EXPLAINED) and t["reason"] and t["formats"] and t["hardware"]
        if t["status"] == dm.RAN:
            assert t["backend"] in (*BACKENDS, "llamacpp"), t
        else:
            assert t["backend"] == ""
    assert {t["target"] for t in dm.TARGETS if t["status"] == dm.EXPLAINED} == {"Olive", "TensorRT", "MLX",
                                                                               "QNN / AIMET", "TFLite / LiteRT"}


def test_measured_rows_come_from_the_tables() -> None:
    tables = {"minilm-l6": {"rows": [
        {"backend": "openvino", "scheme": "fp32", "disk_bytes": 90e6, "cosine_mean": 1.0, "latency_ratio": 0.8},
        {"backend": "openvino", "scheme": "w4", "disk_bytes": 19e6, "cosine_mean": 0.97, "latency_ratio": 0.5},
        {"backend": "openvino", "scheme": "w8", "disk_bytes": 23e6, "cosine_mean": 0.99, "latency_ratio": 0.4}]}}
    rows = {r["target"]: r for r in dm.deploy_map(tables)}
    assert rows["OpenVINO"]["scheme"] == "w4" and rows["OpenVINO"]["disk_mb"] == 19.0
    assert rows["ONNX Runtime"]["disk_mb"] is None and rows["TensorRT"]["x_float"] is None
    text = dm.format_map(list(rows.values()))
    assert "OpenVINO" in text and "0.9700" in text and "explained only" in text
