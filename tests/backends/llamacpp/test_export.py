"""GGUF export checked against llama.cpp itself: its quantizer's bytes, its metadata, gguf-py's reader.

* The bytes qlab writes are read back with gguf-py's ``GGUFReader`` and compared with
  ``qlab.formats`` encodings of the (Q/K-permuted) weights.
* llama.cpp's own quantizer (``llama_model_quantize``, what ``llama-quantize`` runs) applied to
  qlab's F32 export must give byte-identical tensors to qlab's Q8_0 and Q4_0 exports, and to
  qlab's exports of llama.cpp's mixes Q4_K_M, Q2_K, Q3_K_M, Q5_K_M, Q6_K (``qlab.quantize.recipes``:
  K-quants, Q6_K/Q5_K bumps and the Q5_0 / Q4_0 / Q5_1 / Q8_0 fallbacks forced by SmolLM2's
  576-column rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qlab.backends.llamacpp import export_gguf, gguf_name_map, llama_quantize, permute_qk
from qlab.backends.llamacpp.export import _source
from qlab.formats import get

from .conftest import raw_tensors

gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.slow


def _assert_same_tensors(ours: Path, theirs: Path) -> None:
    a, b = raw_tensors(ours), raw_tensors(theirs)
    assert a.keys() == b.keys()
    types = {n: (a[n][0], b[n][0]) for n in a if a[n][0] != b[n][0]}
    assert not types, f"{len(types)} tensor type(s) differ (qlab, llama.cpp): {dict(list(types.items())[:4])}"
    diff = [n for n in a if a[n][1] != b[n][1]]
    assert not diff, f"{len(diff)} tensor(s) differ from llama.cpp's bytes, e.g. {diff[:3]}"


def test_export_layout_metadata_and_fallback(smollm2: Any, tmp_path: Path) -> None:
    path = tmp_path / "q4_k.gguf"
    with pytest.warns(UserWarning, match="fallback"):
        rep = export_gguf(smollm2, path, "q4_k")
    used = {r.gguf_name: r.used for r in rep.rows}
    assert used["blk.0.ffn_down.weight"] == "q4_k"  # 1536 columns: whole super-blocks
    assert used["blk.0.attn_q.weight"] == "q5_0" and used["token_embd.weight"] == "q5_0"  # 576: Q4_K -> Q5_0
    assert {r.gguf_name for r in rep.fallbacks} == {n for n, u in used.items() if u == "q5_0"}
    assert used["output_norm.weight"] == "f32" and "output.weight" not in used  # tied head: one tensor
    assert rep.file_bytes == path.stat().st_size and rep.tensor_bytes < rep.file_bytes
    assert "q5_0" in rep.table()
    # the one report type and table renderer (qlab.core.report): header, rule, a row per tensor, summary
    from qlab.core.report import Report

    lines = rep.table().splitlines()
    assert isinstance(rep, Report) and lines[0].split() == ["tensor", "shape", "requested", "used", "bytes", "note"]
    assert len(lines) == len(rep.rows) + 3 and lines[-1] == rep.summary() == str(rep)
    assert rep.total_bytes == sum(r.nbytes for r in rep.rows) and rep.layer("output_norm.weight").used == "f32"

    reader = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in reader.fields.items()}
    for key, value, _, _ in _source(smollm2.source).kv:  # tokenizer, hyper-parameters, chat template
        if key != "general.file_type":
            assert fields[key] == value, key
    assert fields["general.file_type"] == 14  # LLAMA_FTYPE_MOSTLY_Q4_K_S
    assert [t.name for t in reader.tensors] == [n for n, _ in _source(smollm2.source).tensors]

    state = smollm2.model.state_dict()
    tensors = {t.name: t for t in reader.tensors}
    n_head = {"blk.0.attn_q.weight": 9, "blk.3.attn_k.weight": 3, "blk.7.ffn_down.weight": 0, "token_embd.weight": 0}
    for hf, name in gguf_name_map(state, "llama", 30).items():
        if name in n_head:
            w = state[hf].numpy()
            w = permute_qk(w, n_head[name]) if n_head[name] else w
            t = tensors[name]
            assert t.tensor_type.name.lower() == used[name]
            assert np.asarray(t.data).tobytes() == get(used[name]).encode(w).to_bytes(), name
    norm = tensors["blk.0.attn_norm.weight"]
    assert norm.tensor_type == gguf.GGMLQuantizationType.F32 and norm.data.shape == (576,)
    np.testing.assert_array_equal(norm.data, state["model.layers.0.input_layernorm.weight"].numpy())


def test_half_precision_and_refusals(smollm2: Any, tmp_path: Path) -> None:
    rep = export_gguf(smollm2, tmp_path / "mix.gguf", {"*mlp*": "fp16", "*self_attn*": "bf16"})
    assert rep.types() == {"f32": 62, "f16": 90, "bf16": 120}  # embedding unmatched: kept f32
    t = raw_tensors(tmp_path / "mix.gguf")
    assert t["blk.0.ffn_up.weight"][0] == "f16" and t["blk.0.attn_v.weight"][0] == "bf16"
    w = smollm2.model.state_dict()["model.layers.0.mlp.up_proj.weight"].numpy()
    assert t["blk.0.ffn_up.weight"][1] == w.astype(np.float16).tobytes()
    with pytest.raises(ValueError, match="no GGML type"):
        export_gguf(smollm2, tmp_path / "nf4.gguf", "nf4")
    with pytest.raises(ValueError, match="copies the tokenizer"):
        export_gguf(smollm2.model, tmp_path / "x.gguf", "q8_0")  # no source GGUF to copy from


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_bytes_equal_llama_cpp_quantizer(llama_cpp: Any, exported: Any, fmt: str, tmp_path: Path) -> None:
    f32, _ = exported("f32")
    ours, rep = exported(fmt)
    assert rep.types() == {fmt: 211, "f32": 61}
    theirs = llama_quantize(f32, tmp_path / f"{fmt}-llama.gguf", fmt, pure=True)
    _assert_same_tensors(ours, theirs)


@pytest.fixture(scope="module")
def llama_q4_k_m(llama_cpp: Any, exported: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    f32, _ = exported("f32")
    return llama_quantize(f32, tmp_path_factory.mktemp("llama") / "q4_k_m.gguf", "q4_k_m")


def test_bytes_equal_llama_cpp_mix_replayed(smollm2: Any, llama_q4_k_m: Path, tmp_path: Path) -> None:
    """llama.cpp's Q4_K_M type for every tensor, replayed as a recipe: qlab's Q4_K/Q6_K/Q5_0/Q8_0
    encoders give the same bytes inside a real mixed-precision file."""
    from_gguf = {g: h for h, g in gguf_name_map(smollm2.model.state_dict(), "llama", 30).items()}
    recipe = {
        from_gguf[name].rpartition(".")[0]: typ
        for name, (typ, _) in raw_tensors(llama_q4_k_m).items()
        if typ != "f32"
    }
    assert {"q4_k", "q6_k", "q5_0", "q8_0"} <= set(recipe.values())
    ours = tmp_path / "replayed.gguf"
    export_gguf(smollm2, ours, recipe)
    _assert_same_tensors(ours, llama_q4_k_m)


@pytest.mark.parametrize("mix", ["q4_k_m", "q2_k", "q3_k_m", "q5_k_m", "q6_k"])
def test_bytes_equal_llama_cpp_mixes(
    mix: str, smollm2: Any, llama_q4_k_m: Path, exported: Any, tmp_path: Path
) -> None:
    """qlab's llama.cpp mixes (``qlab.quantize.recipes``: llama_tensor_get_type's choices and the
    row-length fallbacks, e.g. Q2_K -> Q4_0 for 576 columns) write llama.cpp's very file."""
    theirs = llama_q4_k_m if mix == "q4_k_m" else llama_quantize(exported("f32")[0], tmp_path / "llama.gguf", mix)
    ours = tmp_path / f"{mix}.gguf"
    with pytest.warns(UserWarning, match="fallback"):
        rep = export_gguf(smollm2, ours, "llama:" + mix)
    assert len(rep.types()) >= 3  # a real mix: f32 norms and at least two GGML types
    _assert_same_tensors(ours, theirs)


# -- issue 11, item 11: atomic export, never over the source ---------------------------------------
def test_refuses_to_overwrite_the_source(smollm2: Any, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "source.gguf"
    shutil.copyfile(smollm2.source, copy)
    before = copy.stat().st_size, copy.stat().st_mtime_ns
    for target in (copy, tmp_path / "sub" / ".." / "source.gguf"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=r"export_gguf: path .*source\.gguf' is the model's own source GGUF"):
            export_gguf(smollm2, target, "q8_0", source=copy)
    assert (copy.stat().st_size, copy.stat().st_mtime_ns) == before
    with pytest.raises(ValueError, match=r"is the model's own source GGUF"):  # the package's own file
        export_gguf(smollm2, smollm2.source, "q8_0")


_CHILD = """
import resource, signal, sys
import qlab
m = qlab.models.load("smollm2-135m", progress=False)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # writing past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    qlab.backends.llamacpp.export_gguf(m, sys.argv[1], "f32")
except OSError as e:
    print("failed:", e.errno)
    sys.exit(0)
sys.exit("the export past the file-size limit did not fail")
"""


def test_failed_export_leaves_the_previous_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    target = tmp_path / "out.gguf"
    target.write_bytes(b"previous export")
    r = subprocess.run([sys.executable, "-c", _CHILD, str(target)], capture_output=True, text=True, timeout=300,
                       env={**os.environ})  # fmt: skip
    assert r.returncode == 0 and "failed: 27" in r.stdout, r.stdout + r.stderr[-2000:]  # 27 = EFBIG
    assert target.read_bytes() == b"previous export"  # no half file replaced it
    assert [p.name for p in tmp_path.iterdir()] == ["out.gguf"]  # the temporary file is gone
