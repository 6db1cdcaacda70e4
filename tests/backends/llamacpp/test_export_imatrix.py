"""GGUF export and whole-model quantization with an importance matrix, run in llama.cpp (issue 12).

* The tensors ``export_gguf(..., imatrix=)`` writes are ``encode(permute(w), imatrix=v)`` of each
  weight with *its* vector (the qlab encoders are byte-exact with ``ggml_quantize_chunk``'s
  ``quant_weights`` path: tests/formats/gguf/test_imatrix.py), and ``quantize_`` with the same
  recipe and imatrix gives the very weights the file holds (decoded back with gguf-py).
* An IQ3_S file of SmolLM2 (576-column rows fall back to IQ4_NL, as llama.cpp's
  ``tensor_type_fallback``) made with an imatrix runs in llama.cpp, with the perplexity qlab
  simulates within 1 % (2 windows of 128 tokens; the residual is llama.cpp rounding activations
  to Q8_K, see test_perplexity).
* Types llama.cpp refuses without an imatrix (iq2_xxs here) raise naming the tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qlab.backends.llamacpp import export_gguf, permute_qk, perplexity
from qlab.eval import calibration_text
from qlab.eval import perplexity as qlab_perplexity
from qlab.formats import get
from qlab.quantize import WeightOnlyConfig, collect_imatrix, quantize_

from .conftest import raw_tensors

gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imx(smollm2: Any) -> Any:
    return collect_imatrix(smollm2, calibration_text(40_000), window=128, windows=4, dataset="calibration_text(40000)", progress=False)


@pytest.fixture(scope="module")
def iq3s(smollm2: Any, imx: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    path = tmp_path_factory.mktemp("imx") / "iq3_s-imatrix.gguf"
    with pytest.warns(UserWarning, match="fallback"):
        rep = export_gguf(smollm2, path, "iq3_s", imatrix=imx)
    return path, rep


def test_export_bytes_use_each_tensors_vector(smollm2: Any, imx: Any, iq3s: tuple[Path, Any]) -> None:
    path, rep = iq3s
    used = {r.gguf_name: r.used for r in rep.rows}
    assert used["blk.0.ffn_down.weight"] == "iq3_s" and used["blk.0.attn_q.weight"] == "iq4_nl"
    assert used["token_embd.weight"] == "iq4_nl"
    raw = raw_tensors(path)
    state = smollm2.model.state_dict()
    n_head = smollm2.model.config.num_attention_heads
    for gname, hf, fmt in [
        ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", "iq3_s"),
        ("blk.5.attn_q.weight", "model.layers.5.self_attn.q_proj.weight", "iq4_nl"),
    ]:
        w = state[hf].float().numpy()
        w = permute_qk(w, n_head) if ".attn_q." in gname else w
        want = get(fmt).encode(w, imatrix=imx.vector(gname)).to_bytes()
        plain = get(fmt).encode(w).to_bytes()
        assert raw[gname][1] == want and want != plain, gname  # the imatrix changed the bytes
    emb = state["model.embed_tokens.weight"].float().numpy()  # no vector: llama-imatrix never sees it
    assert raw["token_embd.weight"][1] == get("iq4_nl").encode(emb).to_bytes()
    fields = {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items() if k.startswith("quantize.")}
    assert fields["quantize.imatrix.entries_count"] == len(imx) and fields["quantize.imatrix.chunks_count"] == 4
    assert fields["quantize.imatrix.dataset"] == "calibration_text(40000)"


def test_simulation_equals_file_and_llama_cpp_perplexity(
    smollm2: Any, imx: Any, iq3s: tuple[Path, Any], wikitext: str
) -> None:
    path, _ = iq3s
    q = smollm2.fresh()
    report = quantize_(q, WeightOnlyConfig(recipe="iq3_s", imatrix=imx))
    assert len(report.extra["imatrix_tensors"]) == len(imx)
    reader = {t.name: t for t in gguf.GGUFReader(path).tensors}
    t = reader["blk.7.ffn_down.weight"]
    file_w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(q.model.model.layers[7].mlp.down_proj.weight.shape)
    np.testing.assert_array_equal(q.model.model.layers[7].mlp.down_proj.weight.detach().numpy(), file_w)

    ours = qlab_perplexity(q, wikitext, window=128, windows=2, progress=False)
    theirs = perplexity(path, wikitext, window=128, windows=2)
    plain = smollm2.fresh()
    quantize_(plain, WeightOnlyConfig(recipe="iq3_s"))
    without = qlab_perplexity(plain, wikitext, window=128, windows=2, progress=False)
    assert abs(theirs - ours) / ours < 0.01, (ours, theirs)
    assert ours != without  # the imatrix reached the simulated weights


def test_types_that_need_an_imatrix(smollm2: Any, imx: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"blk\.0\.ffn_down\.weight.*iq2_xxs.*importance matrix is required"):
        export_gguf(smollm2, tmp_path / "x.gguf", {"*down_proj": "iq2_xxs"})
    assert not (tmp_path / "x.gguf").exists()
    q = smollm2.fresh()
    before = q.model.model.layers[0].mlp.down_proj.weight.detach().clone()
    with pytest.raises(ValueError, match=r"down_proj.*iq2_xxs.*importance matrix is required"):
        quantize_(q, WeightOnlyConfig(recipe={"*down_proj": "iq2_xxs"}))
    assert bool((q.model.model.layers[0].mlp.down_proj.weight == before).all())  # untouched
    rep = quantize_(q, WeightOnlyConfig(recipe={"*down_proj": "iq2_xxs"}, imatrix=imx))  # with one: fine
    assert {r.used for r in rep.layers if r.name.endswith("down_proj")} == {"iq2_xxs"}
    with pytest.raises(ValueError, match="is not a file"):
        WeightOnlyConfig(recipe="q4_k", imatrix=str(tmp_path / "missing.gguf"))
