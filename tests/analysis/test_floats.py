"""Captured activations against the model's own hidden states; the 8-bit comparison against direct encodes."""

import numpy as np
import pytest
import torch

import qlab
from qlab.analysis.error import sqnr_db
from qlab.analysis.floats import int_vs_float, linear_inputs
from qlab.backends.compare import tokenize


def test_linear_inputs_are_the_hidden_states():
    m = qlab.models.load("minilm-l6", progress=False)
    sents = qlab.eval.wikitext_sentences(4)
    got = linear_inputs(m, ["encoder.layer.1.attention.self.query"], sents)["encoder.layer.1.attention.self.query"]
    b = tokenize(m, sents)
    with torch.no_grad():
        hs = m.model(**b, output_hidden_states=True).hidden_states[1]  # output of layer 0 = input of layer 1
    ref = hs[b["attention_mask"].bool()].numpy()
    assert got.shape == ref.shape == (int(b["attention_mask"].sum()), 384)
    assert np.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("gran", ["tensor", "channel"])
def test_int_vs_float_rows(gran):
    x = np.random.default_rng(0).standard_t(3, size=(64, 256)).astype(np.float32)
    rows = int_vs_float(x, gran)
    assert [r["format"] for r in rows] == ["int8", "fp8_e4m3", "fp8_e5m2", "fp8_e3m4"]
    for r in rows:
        y = qlab.roundtrip(x, r["format"], granularity=gran)
        assert r["sqnr_db"] == pytest.approx(sqnr_db(x, y)) and r["granularity"] == gran
    assert rows[0]["absmax_over_std"] == pytest.approx(np.abs(x).max() / x.std())
