"""GPTQ (qlab.quantize.gptq) on real SmolLM2 activations from the held-out calibration text.

References: the objective itself (``||X W^T - X Q^T||`` computed from the captured inputs ``X``),
qlab's round-to-nearest (``qlab.formats.roundtrip``, which GPTQ must equal when ``H = I``) and
qlab's integer decoder (the stored codes/scales must decode to the new weights bit for bit).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlab import formats
from qlab.eval import calibration_text
from qlab.quantize import GPTQConfig, quantize_
from qlab.quantize import blockwise as B
from qlab.quantize import gptq as G
from qlab.quantize.recipes import Spec
from tests.quantize._fixtures import single_thread, smol  # noqa: F401

CALIB = 20_000  # characters of calibration text: ~4 windows of 128 tokens


def _spec(bits: int, group: int | None, symmetric: bool = False) -> Spec:
    opts = {"granularity": "group", "group_size": group} if group else {"granularity": "channel"}
    return Spec(f"int{bits}", {"symmetric": symmetric, **opts})


@pytest.fixture(scope="module")
def acts(smol):  # noqa: F811
    """Inputs X (tokens, in) of block 0's q_proj and down_proj on 4 x 128 calibration tokens."""
    ids = B.calibration_ids(smol, calibration_text(CALIB), n_samples=4, seq_len=128)
    block = B.decoder_blocks(smol)[1][0]
    got: dict[str, torch.Tensor] = {}
    hooks = [
        block.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: got.__setitem__(n, a[0].reshape(-1, a[0].shape[-1]).clone()))
        for n in ("self_attn.q_proj", "mlp.down_proj")
    ]  # fmt: skip
    try:
        B.run_block(block, B.first_block_inputs(smol, ids, batch_size=4))
    finally:
        for h in hooks:
            h.remove()
    return {n: (x, block.get_submodule(n).weight.detach().float().clone()) for n, x in got.items()}


def _out_err(x: torch.Tensor, w: torch.Tensor, q: torch.Tensor) -> float:
    return float(torch.linalg.norm(x @ (w - q).T))


@pytest.mark.parametrize("layer", ["self_attn.q_proj", "mlp.down_proj"])
@pytest.mark.parametrize(("bits", "group"), [(4, 32), (3, 32), (4, None), (3, None)])
def test_gptq_beats_rtn_on_real_activations(acts, layer, bits, group):
    x, w = acts[layer]
    spec = _spec(bits, group)
    rtn = torch.from_numpy(formats.roundtrip(w.numpy(), spec, **spec.options))
    h = x.T @ x / len(x)
    e_rtn = _out_err(x, w, rtn)
    for act_order in (False, True):
        q = G.gptq_quantize(w, h, G.int_grid(spec), act_order=act_order).weight
        assert _out_err(x, w, q) < 0.95 * e_rtn, (layer, bits, group, act_order)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group", [32, None])
@pytest.mark.parametrize("act_order", [False, True])
def test_identity_hessian_is_rtn(acts, symmetric, group, act_order):
    """With H = I no error is propagated: GPTQ is round-to-nearest, bit for bit."""
    _, w = acts["self_attn.q_proj"]
    spec = _spec(4, group, symmetric)
    q = G.gptq_quantize(w, torch.eye(w.shape[1]), G.int_grid(spec), act_order=act_order).weight
    np.testing.assert_array_equal(q.numpy(), formats.roundtrip(w.numpy(), spec, **spec.options))


@pytest.mark.parametrize(("bits", "group", "symmetric"), [(4, 32, False), (3, None, False), (4, 32, True)])
@pytest.mark.parametrize("act_order", [False, True])
def test_result_is_an_encoding_of_the_format(acts, bits, group, symmetric, act_order):
    """Codes/scales/zero-points are an ``Encoded`` of qlab's integer format with the same group
    layout: ``decode`` gives the GPTQ weights exactly, at the bytes ``encode`` would use."""
    x, w = acts["mlp.down_proj"]
    spec = _spec(bits, group, symmetric)
    grid = G.int_grid(spec)
    res = G.gptq_quantize(w, x.T @ x, grid, act_order=act_order)
    enc = G.encoded(res, grid)
    fmt = formats.get(spec)
    np.testing.assert_array_equal(fmt.decode(enc), res.weight.numpy())
    assert enc.nbytes == fmt.encode(w.numpy(), **spec.options).nbytes
    qmin, qmax = grid.qrange
    assert int(res.codes.min()) >= qmin and int(res.codes.max()) <= qmax
    if act_order:
        assert not torch.equal(res.perm, torch.arange(w.shape[1]))


def test_quantize_api_first_block(smol):  # noqa: F811
    m = smol.fresh()
    cfg = GPTQConfig(weights="int4", group_size=32, act_order=True, include="model.layers.0.*", n_samples=2,
                     seq_len=128, progress=False)  # fmt: skip
    rep = quantize_(m, cfg, calibration=calibration_text(CALIB))
    assert [r.name.rsplit(".", 1)[-1] for r in rep.layers] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert rep.extra["calibration_tokens"] == 256
    for r in rep.layers:
        wq = m.model.get_submodule(r.name).weight.detach().numpy()
        assert r.nbytes == formats.get("int4").encode(wq, **G.check_weight_only(cfg, "GPTQ").options).nbytes
        assert r.bits_per_weight == pytest.approx(4 + 40 / 32)  # codes + fp32 scale + uint8 zero-point
        assert 10 < r.sqnr_db < 30
    assert torch.equal(m.model.model.layers[1].mlp.up_proj.weight, smol.model.model.layers[1].mlp.up_proj.weight)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_(m, cfg, calibration=calibration_text(CALIB))


def test_bad_input(smol):  # noqa: F811
    import qlab

    cfg = GPTQConfig(group_size=32, include="model.layers.0.*", n_samples=1, seq_len=64, progress=False)
    with pytest.raises(ValueError, match="calibration"):
        quantize_(smol.fresh(), cfg, calibration=None)
    with pytest.raises(ValueError, match="affine integer"):
        quantize_(smol.fresh(), GPTQConfig(weights="nf4", group_size=64), calibration="x")
    with pytest.raises(ValueError, match="weight-only"):
        quantize_(smol.fresh(), GPTQConfig(activations="int8"), calibration="x")
    with pytest.raises(ValueError, match="tensor"):
        quantize_(smol.fresh(), GPTQConfig(group_size=None, weight_granularity="tensor"), calibration="x")
    with pytest.raises(ValueError, match="decoder-only"):
        quantize_(qlab.models.load("digits-cnn", progress=False), GPTQConfig(group_size=32), calibration="x")
    bad = smol.fresh()
    with torch.no_grad():
        bad.model.model.layers[0].self_attn.q_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quantize_(bad, cfg, calibration=calibration_text(CALIB))
    with pytest.raises(ValueError, match="NaN"):
        B.InputStats(4).add(torch.tensor([[1.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(ValueError, match="fewer than one window"):
        quantize_(smol.fresh(), GPTQConfig(group_size=32, seq_len=4096, progress=False), calibration="a short text")
    with pytest.raises(ValueError, match="n_samples"):
        GPTQConfig(n_samples=0)


# -- issue 11: token ids beyond the vocabulary are refused before any work -----------------------------
@pytest.mark.parametrize("ids, match", [
    (torch.full((1, 64), 49152), r"calibration ids: token ids must lie in \[0, 49152\) \(the model's vocab_size\); "
                                 r"got ids from 49152 to 49152"),
    (torch.full((1, 64), -1), r"got ids from -1 to -1"),
])  # fmt: skip
def test_token_ids_outside_the_vocabulary(smol, ids, match):  # noqa: F811
    m = smol.fresh()
    before = m.model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    cfg = GPTQConfig(group_size=32, include="model.layers.0.*", n_samples=1, seq_len=64, progress=False)
    with pytest.raises(ValueError, match=match):
        quantize_(m, cfg, calibration=ids)
    assert torch.equal(m.model.model.layers[0].self_attn.q_proj.weight, before)
