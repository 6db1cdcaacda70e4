"""Lesson 12: MatMulNBits bytes against ORT's quantizer, the backend-table cache, the picker state."""

import pytest

from qlab.exercises.deploy import ort_matmul_nbits_bytes
from qlab.viz.deploy import backend_tables, deploy_state, format_rows, matmul_nbits_bytes


@pytest.mark.parametrize("n,k,bits,bs,sym", [(1536, 384, 4, 32, False), (384, 1536, 4, 32, True),
                                             (10, 100, 4, 32, False), (64, 96, 8, 32, False),
                                             (48, 200, 4, 128, False)])
def test_matmul_nbits_bytes_matches_ort(n, k, bits, bs, sym):
    assert matmul_nbits_bytes(n, k, bits, bs, sym)["total"] == ort_matmul_nbits_bytes(n, k, bits, bs, sym)


def test_matmul_nbits_parts():
    b = matmul_nbits_bytes(1536, 384, 4, 32)
    assert b["codes"] == 1536 * 384 // 2 and b["scales"] == 1536 * 12 * 4 and b["zero_points"] == 1536 * 6
    assert b["fp32"] == 1536 * 384 * 4 and b["total"] == sum(b[k] for k in ("codes", "scales", "zero_points"))


ROWS = [{"backend": "torch", "scheme": "fp32", "disk_bytes": 90e6, "weight_bytes": 90e6, "cos": 1.0},
        {"backend": "onnxruntime", "scheme": "int8", "disk_bytes": 30e6, "weight_bytes": 30e6, "cos": 0.99},
        {"backend": "bitsandbytes", "scheme": "nf4", "disk_bytes": 20e6, "weight_bytes": 20e6, "cos": 0.97}]


def test_deploy_state_filters_and_picks():
    s = deploy_state(ROWS, "cos", max_mb=50, min_metric=0.98)
    assert [r["scheme"] for r in s["candidates"]] == ["int8"] and s["best"] is s["smallest"]
    s = deploy_state(ROWS, "cos", max_mb=100, min_metric=0.9)
    assert s["smallest"]["scheme"] == "nf4" and s["best"]["scheme"] == "fp32"
    assert deploy_state(ROWS, "cos", max_mb=10, min_metric=0.0)["best"] is None
    assert deploy_state(ROWS, "cos", 100, 0.98, higher_is_better=False)["best"]["scheme"] == "nf4"


def test_backend_cache_schema():
    payload = backend_tables()
    assert payload["script"] == "scripts/backend_tables.py"
    assert set(payload["rows"]) == {"minilm-l6", "digits-cnn", "smollm2-135m"}
    for name, t in payload["rows"].items():
        rows = t["rows"]
        assert rows[0]["scheme"] == "fp32 (reference)" and rows[0]["latency_ratio"] == pytest.approx(1.0)
        # every runtime qlab runs has its rows (SmolLM2: OpenVINO only; llama.cpp's are lesson 13's)
        want = {"torch", "openvino"} if name == "smollm2-135m" else {"torch", "torch_native", "onnxruntime",
                                                                     "bitsandbytes", "openvino"}  # fmt: skip
        assert {r["backend"] for r in rows} == want, name
        assert all(0 < r["disk_bytes"] and 0 < r["weight_bytes"] for r in rows)
        text = format_rows(rows, t["metrics"], latency=True).splitlines()
        assert len(text) == len(rows) + 2  # header, rule, rows (format_table)
    lm = payload["rows"]["smollm2-135m"]
    assert lm["metrics"] == ["perplexity", "kl", "top1"] and all(r["perplexity"] > 1 for r in lm["rows"])
    mini = payload["rows"]["minilm-l6"]
    assert mini["metrics"] == ["cosine_mean", "top10_overlap"]
    assert any("MatMulNBits" in r["scheme"] for r in mini["rows"])


@pytest.mark.slow
def test_backend_cache_row_recomputes():
    # the digits torch.ao static row: accuracy is deterministic
    import qlab
    from qlab.backends import torch_native
    from qlab.backends.compare import batches

    rows = backend_tables()["rows"]["digits-cnn"]["rows"]
    cached = next(r for r in rows if r["backend"] == "torch_native" and r["scheme"].startswith("static"))
    m = qlab.models.load("digits-cnn", progress=False)
    live = torch_native.quantize_static(m, batches(m, 128, 32, "calibration"))
    assert live.evaluate()["accuracy"] == pytest.approx(cached["accuracy"], abs=1e-9)
    assert live.disk_bytes == cached["disk_bytes"]


def test_panel_fades_rows_over_the_budget():
    """Lowering the disk budget below the float row fades its bars, changes the picture and the readout."""
    from qlab.viz.deploy import deploy_panel

    from .panel_probe import one

    table = {"metrics": ["cos"], "rows": [r | {"latency_ms": 1.0, "latency_ratio": x} for r, x in zip(ROWS, (1.0, 0.5, 2.0), strict=True)]}
    panel = deploy_panel(table)
    img, text, mb = one(panel, "Image"), one(panel, "HTML"), one(panel, "FloatSlider", "max MB")
    png0, text0 = img.value, text.value
    assert text0.startswith("3 of 3 rows qualify") and "most accurate: <b>torch: fp32</b>" in text0
    mb.value = 50.0
    assert text.value.startswith("2 of 3 rows qualify") and "most accurate: <b>onnxruntime: int8</b>" in text.value
    assert img.value != png0
    mb.value = 90.0
    assert text.value == text0 and img.value == png0  # blitting leaves no trace of the faded bars
