"""Per-layer sensitivity: one group quantized at a time, the rest float, weights restored."""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import pytest
import torch

from qlab.analysis.sensitivity import groups_of, layer_sensitivity
from qlab.core import lm
from qlab.quantize import quantize_model
from qlab.quantize.recipes import targets
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)


def test_groups(smol):
    assert len(groups_of(smol, "module")) == 211
    blocks = groups_of(smol, "block")
    assert len(blocks) == 31 and len(blocks["model.layers.7"]) == 7 and blocks["model.embed_tokens"] == ["model.embed_tokens"]
    types = groups_of(smol, "type")
    assert sorted(types) == sorted(["model.embed_tokens", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                    "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"])  # fmt: skip
    assert len(types["mlp.down_proj"]) == 30
    assert groups_of(smol, {"v": "*attn_v*"})["v"][0] == "model.layers.0.self_attn.v_proj"
    with pytest.raises(ValueError, match="no weight"):
        groups_of(smol, {"x": "nothing*"})
    with pytest.raises(ValueError, match="by must be"):
        groups_of(smol, "row")


def test_one_group_at_a_time(smol):
    m = smol.fresh()
    before = {t.name: t.weight.detach().clone() for t in targets(m) if "layers.1." in t.name}
    by = {"v1": "model.layers.1.self_attn.v_proj", "mlp1": "model.layers.1.mlp.*"}
    res = layer_sensitivity(m, "q2_k", by=by, window=32, windows=1, progress=False)
    assert [r["group"] for r in res.rows] == ["v1", "mlp1"] and res.rows[1]["tensors"] == 3
    assert all(r["kl"] > 0 and 0 <= r["top1"] <= 1 for r in res.rows)
    assert all(torch.equal(t.weight, before[t.name]) for t in targets(m) if t.name in before)  # restored
    # the row equals quantizing that group alone by hand
    ref = lm.reference(m, None, 32, 1, torch.float16, progress=False, batch=4)
    quantize_model(m, "q2_k", include="model.layers.1.mlp.*")
    assert lm.compare(m, ref, progress=False, batch=4)["kl"] == pytest.approx(res.rows[1]["kl"], rel=1e-9)
    assert res.ranked()[0]["kl"] >= res.ranked()[1]["kl"]
    assert "sensitivity to q2_k" in res.table()
