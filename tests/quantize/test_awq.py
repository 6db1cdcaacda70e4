"""AWQ (qlab.quantize.awq) on real SmolLM2 activations from the held-out calibration text.

References: the output error computed directly from the captured inputs ``X`` (the Gram-matrix
objective must equal it), qlab's round-to-nearest (``alpha = 0``), and the float block itself
(folding the scales must not change its output).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlab import formats
from qlab.eval import calibration_text
from qlab.quantize import AWQConfig, quantize_
from qlab.quantize import awq as A
from qlab.quantize import blockwise as B
from qlab.quantize.recipes import Spec
from tests.quantize._fixtures import single_thread, smol  # noqa: F401

CALIB = 20_000
SPEC = Spec("int4", {"symmetric": False, "granularity": "group", "group_size": 32})
QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


@pytest.fixture(scope="module")
def block0(smol):  # noqa: F811
    """Block 0 of SmolLM2, its inputs on 4 x 128 calibration tokens, the captured Linear inputs
    and the statistics the method collects."""
    ids = B.calibration_ids(smol, calibration_text(CALIB), n_samples=4, seq_len=128)
    inputs = B.first_block_inputs(smol, ids, batch_size=4)
    block = B.decoder_blocks(smol)[1][0]
    got: dict[str, torch.Tensor] = {}
    hooks = [
        block.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: got.__setitem__(n, a[0].reshape(-1, a[0].shape[-1]).clone()))
        for n in ("self_attn.q_proj", "mlp.gate_proj", "mlp.down_proj")
    ]  # fmt: skip
    try:
        stats, outputs = B.collect(block, B.linears(block), inputs)
    finally:
        for h in hooks:
            h.remove()
    return {"block": block, "inputs": inputs, "outputs": outputs, "x": got, "stats": stats}


def test_gram_objective_is_the_output_mse(block0):
    x = block0["x"]["mlp.down_proj"]
    st = block0["stats"]["mlp.down_proj"]
    w = block0["block"].mlp.down_proj.weight.detach().float()
    e = w - A.roundtrip(w, SPEC)
    direct = float(((x.double() @ e.double().T) ** 2).mean())
    assert A.output_error(e, st.gram) == pytest.approx(direct, rel=1e-4)
    np.testing.assert_allclose(st.abs_mean.numpy(), x.abs().mean(0).numpy(), rtol=1e-5)
    # q, k and v read one tensor: one statistics object
    assert block0["stats"][QKV[0]] is block0["stats"][QKV[1]] is block0["stats"][QKV[2]]


@pytest.mark.parametrize(("names", "xname"), [(QKV, "self_attn.q_proj"), (("mlp.gate_proj", "mlp.up_proj"), "mlp.gate_proj"), (("mlp.down_proj",), "mlp.down_proj")])
@pytest.mark.parametrize("spec", [SPEC, Spec("int3", {"symmetric": False, "granularity": "channel"})])
def test_search_never_worse_than_rtn(block0, names, xname, spec):
    blk, x = block0["block"], block0["x"][xname]
    w = torch.cat([blk.get_submodule(n).weight.detach().float() for n in names])
    st = block0["stats"][names[0]]
    s, alpha, losses = A.search_scale(w, st.gram, st.abs_mean, spec, n_grid=10)
    rtn = torch.from_numpy(formats.roundtrip(w.numpy(), spec, **spec.options))
    rtn_mse = float(((x.double() @ (w - rtn).double().T) ** 2).mean())
    assert losses[0] == pytest.approx(rtn_mse, rel=1e-4)  # alpha = 0 is round-to-nearest
    q = A.roundtrip(w * s, spec) / s
    awq_mse = float(((x.double() @ (w - q).double().T) ** 2).mean())
    assert awq_mse <= rtn_mse * (1 + 1e-6)
    assert awq_mse == pytest.approx(min(losses), rel=1e-4)
    assert alpha == pytest.approx(losses.index(min(losses)) / 10)


def test_folding_keeps_the_float_block(block0, smol):  # noqa: F811
    m = smol.fresh()
    block = B.decoder_blocks(m)[1][0]
    gen = torch.Generator().manual_seed(0)
    groups = A.scale_groups(block, set(B.linears(block)))
    assert [p for p, _ in groups] == ["input_layernorm", "post_attention_layernorm", "mlp.up_proj"]  # GQA: no v->o
    for prev, names in groups:
        s = torch.exp(torch.randn(block.get_submodule(names[0]).in_features, generator=gen))
        A.fold_scale(block.get_submodule(prev), [block.get_submodule(n) for n in names], s)
    ref = block0["outputs"]
    got = B.run_block(block, block0["inputs"])
    for (y, _), (r, _) in zip(got, ref, strict=True):
        assert float((y - r).abs().max() / r.abs().max()) < 1e-5


def test_clip_search_never_worse_per_group(block0):
    w = block0["block"].mlp.down_proj.weight.detach().float()
    g = block0["stats"]["mlp.down_proj"].gram
    wc, shrink = A.search_clip(w, g, SPEC, n_grid=20)
    assert float(shrink.min()) >= 0.55 and float(shrink.max()) == 1.0
    assert A.output_error(w - A.roundtrip(wc, SPEC), g) <= A.output_error(w - A.roundtrip(w, SPEC), g)


def test_quantize_api_first_block_on_grid(smol):  # noqa: F811
    m = smol.fresh()
    spec = Spec("int4", {"symmetric": True, "granularity": "group", "group_size": 32})
    cfg = AWQConfig(weights="int4", group_size=32, weight_options={"symmetric": True}, include="model.layers.0.*",
                    n_samples=2, seq_len=128, n_grid=10, progress=False)  # fmt: skip
    rep = quantize_(m, cfg, calibration=calibration_text(CALIB))
    assert len(rep.layers) == 7 and set(rep.extra["alpha"]) == {f"model.layers.0.{n}" for n in (*QKV, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    for r in rep.layers:
        wq = m.model.get_submodule(r.name).weight.detach().numpy()
        np.testing.assert_array_equal(formats.roundtrip(wq, spec, **spec.options), wq)  # on the grid
        assert r.nbytes == formats.get(spec).encode(wq, **spec.options).nbytes
    assert not torch.equal(m.model.model.layers[0].input_layernorm.weight, smol.model.model.layers[0].input_layernorm.weight)
    assert torch.equal(m.model.model.layers[1].input_layernorm.weight, smol.model.model.layers[1].input_layernorm.weight)


def test_bad_input(smol):  # noqa: F811
    import qlab

    cfg = AWQConfig(group_size=32, include="model.layers.0.*", n_samples=1, seq_len=64, progress=False)
    with pytest.raises(ValueError, match="calibration"):
        quantize_(smol.fresh(), cfg, calibration=None)
    with pytest.raises(ValueError, match="weight-only"):
        quantize_(smol.fresh(), AWQConfig(group_size=32, activations="int8"), calibration="x")
    with pytest.raises(ValueError, match="group_size"):
        quantize_(smol.fresh(), AWQConfig(group_size=128), calibration="x")  # 576 = 4.5 x 128
    with pytest.raises(ValueError, match="decoder-only"):
        quantize_(qlab.models.load("digits-cnn", progress=False), AWQConfig(group_size=32), calibration="x")
    bad = smol.fresh()
    with torch.no_grad():
        bad.model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quantize_(bad, cfg, calibration=calibration_text(CALIB))
    with pytest.raises(ValueError, match="clip"):
        AWQConfig(clip="yes")
