"""Importance matrices (qlab.quantize.imatrix) on real SmolLM2, and llama.cpp's GGUF imatrix file.

References: the statistic is recomputed by hand from SmolLM2's own sub-modules (embedding +
RMSNorm for ``attn_q``'s input, ``act(gate(y)) * up(y)`` for ``ffn_down``'s), and the file layout
is built independently with gguf-py's ``GGUFWriter`` following ``tools/imatrix/imatrix.cpp``
(``save_imatrix``: ``NAME.in_sum2`` ggml shape ``[cols, n_mat]``, ``NAME.counts`` ``[1, n_mat]``,
``general.type``, ``imatrix.datasets``, ``imatrix.chunk_count``, ``imatrix.chunk_size``) and
``llama-quantize``'s reading rule (``in_sum2 / counts``, 1 where the count is 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qlab.eval import calibration_text
from qlab.quantize.imatrix import IMatrix, collect_imatrix, load_imatrix, module_vectors, save_imatrix
from tests.quantize._fixtures import single_thread, smol  # noqa: F401

gguf = pytest.importorskip("gguf")
WINDOW, WINDOWS = 16, 2  # llama-imatrix's smallest batch


@pytest.fixture(scope="module")
def imx(smol: Any) -> IMatrix:  # noqa: F811
    return collect_imatrix(smol, calibration_text(4000), window=WINDOW, windows=WINDOWS, dataset="calib", progress=False)


def test_statistic_equals_hand_computation(smol: Any, imx: IMatrix) -> None:  # noqa: F811
    n_layers = smol.model.config.num_hidden_layers
    assert len(imx) == 7 * n_layers and all(n.startswith("blk.") for n in imx.names())  # no token_embd/output
    assert imx.chunk_count == WINDOWS and imx.chunk_size == WINDOW and imx.datasets == ("calib",)
    assert all(float(c[0]) == WINDOW * WINDOWS for c in imx.counts.values())

    ids = torch.tensor(smol.tokenizer(calibration_text(4000), add_special_tokens=False)["input_ids"][: WINDOW * WINDOWS]).view(WINDOWS, WINDOW)
    inner = smol.model.model
    with torch.inference_mode():
        x = inner.layers[0].input_layernorm(inner.embed_tokens(ids)).reshape(-1, inner.config.hidden_size)
        want_q = x.double().square().mean(0).float().numpy()
        got: list[torch.Tensor] = []
        h = inner.layers[3].post_attention_layernorm.register_forward_hook(lambda m, a, out: got.append(out))
        try:
            for row in ids:
                smol.model(input_ids=row[None])
        finally:
            h.remove()
        mlp = inner.layers[3].mlp
        y = torch.cat([g.reshape(-1, g.shape[-1]) for g in got])
        z = mlp.act_fn(mlp.gate_proj(y)) * mlp.up_proj(y)
        want_down = z.double().square().mean(0).float().numpy()
    np.testing.assert_allclose(imx.vector("blk.0.attn_q.weight"), want_q, rtol=1e-5)
    np.testing.assert_allclose(imx.vector("blk.0.attn_k.weight"), want_q, rtol=1e-5)  # same input
    np.testing.assert_allclose(imx.vector("blk.3.ffn_down.weight"), want_down, rtol=1e-4)
    assert imx.vector("blk.3.ffn_down.weight").shape == (inner.config.intermediate_size,)


def test_round_trip(imx: IMatrix, tmp_path: Path) -> None:
    path = save_imatrix(imx, tmp_path / "imatrix.gguf")
    back = load_imatrix(path)
    assert back.names() == imx.names()
    for n in imx.names():
        np.testing.assert_array_equal(back.sums[n], imx.sums[n])
        np.testing.assert_array_equal(back.counts[n], imx.counts[n])
        np.testing.assert_array_equal(back.vector(n), imx.sums[n][0] / imx.counts[n][0])
    assert (back.chunk_count, back.chunk_size, back.datasets) == (imx.chunk_count, imx.chunk_size, imx.datasets)
    r = gguf.GGUFReader(path)  # the layout llama-quantize reads
    fields = {k: f.contents() for k, f in r.fields.items()}
    assert fields["general.type"] == "imatrix" and "general.architecture" not in fields
    assert fields["imatrix.datasets"] == ["calib"]
    assert r.fields["imatrix.chunk_count"].types == [gguf.GGUFValueType.UINT32]
    t = {x.name: x for x in r.tensors}
    assert [int(d) for d in t["blk.0.ffn_down.weight.in_sum2"].shape] == [1536, 1]
    assert [int(d) for d in t["blk.0.ffn_down.weight.counts"].shape] == [1, 1]
    assert [x.name for x in r.tensors][:2] == ["blk.0.attn_k.weight.in_sum2", "blk.0.attn_k.weight.counts"]  # sorted


def _llama_cpp_layout(path: Path, keys: bool = True, counts: bool = True) -> dict[str, Any]:
    """An imatrix file as ``IMatrixCollector::save_imatrix`` writes it, built with gguf-py alone:
    a dense tensor, a 4-expert MoE tensor with one unused expert, and an ``.in_sum`` (newer writers)."""
    rng = np.random.default_rng(0)
    dense = rng.random(8, dtype=np.float32) * 100
    moe = rng.random((4, 6), dtype=np.float32) * 10
    moe_counts = np.array([5, 0, 7, 2], dtype=np.float32)
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_string("general.type", "imatrix")
    if keys:
        w.add_array("imatrix.datasets", ["wiki.train.raw", "code.txt"])
        w.add_uint32("imatrix.chunk_count", 3)
        w.add_uint32("imatrix.chunk_size", 512)
    w.add_tensor("blk.0.attn_q.weight.in_sum2", dense.reshape(1, 8))
    if counts:
        w.add_tensor("blk.0.attn_q.weight.counts", np.array([[1536.0]], dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight.in_sum", dense.reshape(1, 8) / 3)
    w.add_tensor("blk.1.ffn_up_exps.weight.in_sum2", moe)
    w.add_tensor("blk.1.ffn_up_exps.weight.counts", moe_counts.reshape(4, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"dense": dense, "moe": moe, "moe_counts": moe_counts}


def test_reads_llama_cpp_layout(tmp_path: Path) -> None:
    ref = _llama_cpp_layout(tmp_path / "theirs.gguf")
    imx = load_imatrix(tmp_path / "theirs.gguf")
    assert imx.names() == ["blk.0.attn_q.weight", "blk.1.ffn_up_exps.weight"]  # .in_sum ignored
    assert imx.datasets == ("wiki.train.raw", "code.txt") and imx.dataset == "code.txt"
    assert (imx.chunk_count, imx.chunk_size) == (3, 512)
    np.testing.assert_array_equal(imx.vector("blk.0.attn_q.weight"), ref["dense"] / np.float32(1536))
    moe = imx.vector("blk.1.ffn_up_exps.weight")
    assert moe.shape == (4, 6)
    np.testing.assert_array_equal(moe[1], np.ones(6, np.float32))  # unused expert: llama-quantize's 1s
    for e in (0, 2, 3):
        np.testing.assert_array_equal(moe[e], ref["moe"][e] / ref["moe_counts"][e])
    np.testing.assert_array_equal(imx.counts["blk.1.ffn_up_exps.weight"], ref["moe_counts"])
    save_imatrix(imx, tmp_path / "ours.gguf")  # and back: the MoE layout survives
    again = load_imatrix(tmp_path / "ours.gguf")
    np.testing.assert_array_equal(again.sums["blk.1.ffn_up_exps.weight"], ref["moe"])


def test_bad_files_and_arguments(smol: Any, imx: IMatrix, tmp_path: Path) -> None:  # noqa: F811
    _llama_cpp_layout(tmp_path / "nokeys.gguf", keys=False)
    with pytest.raises(ValueError, match="imatrix metadata"):
        load_imatrix(tmp_path / "nokeys.gguf")
    _llama_cpp_layout(tmp_path / "nocounts.gguf", counts=False)
    with pytest.raises(ValueError, match="mismatched sums and counts.*attn_q"):
        load_imatrix(tmp_path / "nocounts.gguf")
    (tmp_path / "legacy.dat").write_bytes(b"\x01\x00\x00\x00abc")
    with pytest.raises(ValueError, match="legacy .dat"):
        load_imatrix(tmp_path / "legacy.dat")
    with pytest.raises(ValueError, match="model file"):
        load_imatrix(smol.source)
    tied = collect_imatrix(smol, calibration_text(4000), window=16, windows=1, process_output=True, progress=False)
    assert "output.weight" not in tied and len(tied) == len(imx)  # SmolLM2's head is token_embd in llama.cpp
    with pytest.raises(ValueError, match="window must be an int >= 16"):
        collect_imatrix(smol, "some text", window=8, windows=1)
    with pytest.raises(ValueError, match="name no Linear weight.*blk.0.atn_q"):
        module_vectors(smol, {"blk.0.atn_q.weight": np.ones(576, np.float32)})
    vec = module_vectors(smol, imx)
    assert set(vec) == {n for n, m in smol.model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n}
    np.testing.assert_array_equal(vec["model.layers.2.mlp.down_proj"], imx.vector("blk.2.ffn_down.weight"))
