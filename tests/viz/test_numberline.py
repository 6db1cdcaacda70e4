"""Number-line grids and facts against ml_dtypes (every code of the reference dtype) and bitsandbytes."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qlab.viz.numberline import (  # noqa: E402
    FLOAT_FORMATS,
    facts_line,
    format_facts,
    grid,
    numberline_state,
    plot_numberline,
    plot_precision,
)

REF = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16, "fp8_e4m3": ml_dtypes.float8_e4m3fn,
       "fp8_e5m2": ml_dtypes.float8_e5m2, "fp8_e3m4": ml_dtypes.float8_e3m4, "fp6_e2m3": ml_dtypes.float6_e2m3fn,
       "fp6_e3m2": ml_dtypes.float6_e3m2fn, "fp4_e2m1": ml_dtypes.float4_e2m1fn}
BITS = {"fp16": 16, "bf16": 16, "fp8_e4m3": 8, "fp8_e5m2": 8, "fp8_e3m4": 8, "fp6_e2m3": 6, "fp6_e3m2": 6, "fp4_e2m1": 4}


def _ml_dtypes_grid(name):
    dt = REF[name]
    n = BITS[name]
    raw = np.arange(2**n, dtype=np.uint32)
    if n == 16:
        vals = raw.astype(np.uint16).view(dt).astype(np.float64)
    else:  # ml_dtypes stores sub-byte floats one per byte, in the low bits
        vals = raw.astype(np.uint8).view(dt).astype(np.float64)
    return np.unique(vals[np.isfinite(vals)])


@pytest.mark.parametrize("name", list(REF))
def test_grid_equals_ml_dtypes(name):
    g = grid(name).astype(np.float64)
    assert np.array_equal(g, _ml_dtypes_grid(name))
    f = format_facts(name)
    fi = ml_dtypes.finfo(REF[name])
    assert f["max"] == float(fi.max) and f["min_normal"] == float(fi.smallest_normal)
    assert f["min_subnormal"] == float(fi.smallest_subnormal) and f["mantissa_bits"] == fi.nmant
    assert f["n_finite"] == g.size and f["relative_step"] == float(fi.eps)


def test_fp32_facts_and_no_enumeration():
    f = format_facts("fp32")
    fi = np.finfo(np.float32)
    assert f["max"] == float(fi.max) and f["min_subnormal"] == float(fi.smallest_subnormal)
    assert f["relative_step"] == float(fi.eps) and f["n_finite"] == 2**32 - 2**24 - 1  # minus Inf/NaN, one zero
    with pytest.raises(ValueError):
        grid("fp32")


def test_nf4_matches_bitsandbytes():
    from bitsandbytes.functional import get_4bit_type

    ref = np.sort(get_4bit_type("nf4", device="cpu").numpy().astype(np.float64))
    g = grid("nf4").astype(np.float64)
    assert g.size == 16 and np.allclose(g, ref, rtol=0, atol=1e-7)
    assert format_facts("nf4")["max"] == 1.0


def test_state_and_plots():
    s = numberline_state("fp4_e2m1")
    assert s["positive"].tolist() == [0.5, 1, 1.5, 2, 3, 4, 6]
    assert np.allclose(s["relative_gap"], [1, 0.5, 1 / 3, 0.5, 1 / 3, 0.5])
    assert set(FLOAT_FORMATS) >= set(REF) and "E2M1" in facts_line(s["facts"])
    fig, axes = plt.subplots(1, 2)
    plot_numberline(axes[0], s["values"], "fp4")
    plot_precision(axes[1], {"fp4": s, "e4m3": numberline_state("fp8_e4m3")})
    assert len(axes[1].lines) == 2
    plt.close(fig)


def test_numberline_panel_moves_ticks_in_place():
    from qlab.viz.numberline import numberline_panel
    from tests.viz.panel_probe import move

    panel = numberline_panel("fp8_e4m3")
    (png0, text0), (png1, text1) = move(panel, "format", "fp16")
    assert png1 != png0 and text1 == f"<b>{facts_line(format_facts('fp16'))}</b>" != text0
    (_, _), (png2, text2) = move(panel, "format", "fp8_e4m3")
    assert png2 == png0 and text2 == text0
