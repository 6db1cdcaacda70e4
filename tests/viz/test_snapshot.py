"""Static snapshots of widget panels (qlab.viz.snapshot), rendered from ipywidgets' own saved-state
serialisation (``ipywidgets.embed.embed_data``, what a notebook stores in ``metadata.widgets``),
and the committed lessons carry an up-to-date snapshot for every widget output."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ipywidgets as W
import pytest
from ipywidgets.embed import embed_data

from qlab.viz.snapshot import NOTE, add_snapshots, snapshot_html

ROOT = Path(__file__).resolve().parents[2]


def _state(*views):
    return embed_data(views=list(views))["manager_state"]["state"]


def test_controls_html_and_output_are_rendered():
    slider = W.IntSlider(value=5, min=2, max=8, description="bits")
    log = W.FloatLogSlider(value=0.01, base=10, min=-3, max=0, description="tol", readout_format=".3f")
    dd = W.Dropdown(options=["q4_0", "q8_0"], value="q8_0", description="format")
    many = W.SelectMultiple(options=["a", "b", "c"], value=("a", "c"), description="pick")
    box = W.Checkbox(value=True, description="symmetric")
    text = W.HTML("<b>8.5 bits/weight</b>")
    out = W.Output()
    out.outputs = ({"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}, "metadata": {}},)
    panel = W.VBox([W.HBox([slider, log, dd, many, box]), text, out, W.Button(description="go")])
    h = snapshot_html(_state(panel), panel.model_id)
    for piece in ("bits: <b>5</b>", "tol: <b>0.010</b>", "format: <b>q8_0</b>", "pick: <b>a, c</b>", "☑ symmetric",
                  "<b>8.5 bits/weight</b>", 'src="data:image/png;base64,iVBORw0KGgo="', "<button disabled>go</button>", NOTE):
        assert piece in h, piece
    assert "flex-direction:column" in h and "flex-direction:row" in h


def test_text_is_escaped_and_unknown_ids_refused():
    t = W.Text(value="<script>x</script>", description="prompt")
    h = snapshot_html(_state(t), t.model_id)
    assert "&lt;script&gt;" in h and "<script>" not in h
    with pytest.raises(KeyError, match="not in the saved widget state"):
        snapshot_html(_state(t), "nope")


def test_add_snapshots_only_touches_widget_outputs():
    s = W.IntSlider(value=3, description="n")
    nb = {"metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": _state(s)}}},
          "cells": [{"cell_type": "code", "outputs": [
              {"output_type": "display_data", "data": {"application/vnd.jupyter.widget-view+json": {"model_id": s.model_id},
                                                       "text/plain": "IntSlider(value=3)"}},
              {"output_type": "stream", "text": "hello"}]},
              {"cell_type": "markdown", "source": "x"}]}  # fmt: skip
    assert add_snapshots(nb) == 1
    data = nb["cells"][0]["outputs"][0]["data"]
    assert "n: <b>3</b>" in data["text/html"] and data["text/plain"] == "IntSlider(value=3)"
    assert "data" not in nb["cells"][0]["outputs"][1]


def test_committed_lessons_have_fresh_snapshots(capsys):
    spec = importlib.util.spec_from_file_location("widget_snapshots", ROOT / "scripts" / "widget_snapshots.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0, capsys.readouterr().err


def test_image_widget_value_comes_from_its_buffer():
    img = W.Image(value=b"\x89PNG\r\n\x1a\nfake", format="png")
    h = snapshot_html(_state(W.VBox([img])), img.model_id)
    assert 'src="data:image/png;base64,iVBORw0KGgpmYWtl"' in h
