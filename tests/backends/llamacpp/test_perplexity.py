"""Perplexity and KL inside llama.cpp against qlab's, same text and protocol (issue 3, section 5).

2 windows of 512 tokens of WikiText-2 here (the full protocol, 16 x 512, is in the closing note:
qlab fp32 36.6350 vs llama.cpp F32 36.6345; Q8_0 36.739 vs 36.891; Q4_0 51.337 vs 51.546).

Why the quantized numbers are close but not identical
----------------------------------------------------
The exported weights are bit-identical to ``quantize_model``'s (``test_export``), yet llama.cpp
does not multiply them with float32 activations: its CPU kernels for a Q4_0 / Q8_0 weight first
quantize every activation row to **Q8_0** (blocks of 32 values, an fp16 scale, int8 codes:
``vec_dot_type`` in ggml-cpu), for K-quants to **Q8_K** (blocks of 256), and take the dot product
in integers. So every input of every linear layer -- the tied output matrix included -- is
rounded to ~8 bits, an error a weight-only simulation does not make. Everything else agrees: with
F32 weights (no activation rounding in llama.cpp) KL to qlab's float32 run is ~1e-6 nats.
``test_activation_rounding_explains_the_residual`` shows it: rounding the inputs of every
``nn.Linear`` to Q8_0 in the simulated Q8_0 model reproduces llama.cpp's KL to the float32
reference and its top-1 agreement, where weight-only simulation has a third of that KL. The
token-by-token rounding is not reproduced bit for bit (ggml's SIMD quantizer multiplies by
127/amax and rounds half to even, the reference divides and rounds half away; this model's
massive activations amplify such flips), so perplexities of the two differ by a few 0.1 %.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from qlab.backends.llamacpp import compare, perplexity, tokenize
from qlab.formats import get

from .conftest import WINDOW, WINDOWS, hf_tokens, simulate

pytestmark = pytest.mark.slow


def _rel(a: float, b: float) -> float:
    return abs(a - b) / b


class _RoundInputsQ8_0:
    """Forward pre-hooks rounding the input of every ``nn.Linear`` to Q8_0, as ggml's CPU matmul does."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.handles = model, []

    def __enter__(self) -> None:
        q8 = get("q8_0")

        def hook(_mod: Any, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return (torch.from_numpy(q8.decode(q8.encode(args[0]))), *args[1:])

        self.handles = [m.register_forward_pre_hook(hook) for m in self.model.modules() if isinstance(m, torch.nn.Linear)]

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


@pytest.fixture(scope="module")
def ref(smollm2: Any, wikitext: str) -> Any:
    """qlab's float32 run (``qlab.eval.reference``): tokens, log-probabilities, perplexity."""
    from qlab.eval import reference

    return reference(smollm2, wikitext, window=WINDOW, windows=WINDOWS, progress=False)


@pytest.fixture(scope="module")
def simulated(smollm2: Any, ref: Any) -> Any:
    """``(fmt, round_inputs)`` -> ``qlab.eval.compare`` of ``quantize_model(fmt)`` against ``ref``."""
    from qlab.eval import compare as qlab_compare

    models: dict[str, Any] = {}
    cache: dict[tuple[str, bool], dict[str, float]] = {}

    def get_result(fmt: str, round_inputs: bool = False) -> dict[str, float]:
        if (fmt, round_inputs) not in cache:
            m = models.setdefault(fmt, smollm2 if fmt == "f32" else simulate(smollm2, fmt))
            if round_inputs:
                with _RoundInputsQ8_0(m.model):
                    cache[fmt, True] = qlab_compare(m, ref, progress=False)
            else:
                cache[fmt, False] = qlab_compare(m, ref, progress=False)
        return cache[fmt, round_inputs]

    return get_result


@pytest.fixture(scope="module")
def in_llama(llama_cpp: Any, exported: Any, ref: Any) -> Any:
    """``fmt`` -> llama.cpp's :func:`compare` of qlab's exported file against ``ref``."""
    cache: dict[str, dict[str, float]] = {}

    def get_result(fmt: str) -> dict[str, float]:
        if fmt not in cache:
            cache[fmt] = compare(exported(fmt)[0], ref)
        return cache[fmt]

    return get_result


def test_llama_cpp_tokenizer_matches_transformers(llama_cpp: Any, exported: Any, smollm2: Any, wikitext: str) -> None:
    """Both sides score the same tokens: llama.cpp's tokenizer (built from the GGUF metadata qlab
    copied) gives transformers' ids on the first 16 x 512 WikiText-2 tokens."""
    path, _ = exported("f32")
    n = 16 * 512
    ours = tokenize(path, wikitext[: 8 * n])[:n]
    np.testing.assert_array_equal(np.asarray(ours), hf_tokens(smollm2, wikitext, n))


def test_f32_perplexity_matches_qlab(exported: Any, ref: Any, in_llama: Any, wikitext: str) -> None:
    path, rep = exported("f32")
    assert rep.types() == {"f32": 272}
    theirs = perplexity(path, wikitext, window=WINDOW, windows=WINDOWS)  # llama.cpp's own tokens
    assert 5 < ref.perplexity < 500
    assert _rel(theirs, ref.perplexity) < 0.005, (ref.perplexity, theirs)
    r = in_llama("f32")
    assert r["n_tokens"] == WINDOWS * (WINDOW - 1) and r["kl"] < 1e-4 and r["top1"] > 0.99
    with pytest.raises(ValueError, match="need"):
        perplexity(path, wikitext[:2000], window=WINDOW, windows=WINDOWS)
    with pytest.raises(ValueError, match="window >= 2"):
        perplexity(path, wikitext, window=1)


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_quantized_perplexity_matches_simulation(fmt: str, exported: Any, simulated: Any, ref: Any, wikitext: str) -> None:
    """A Q8_0 / Q4_0 file written by qlab has, in llama.cpp, the perplexity of qlab's
    ``quantize_model`` with the same recipe, within 1 %."""
    sim = simulated(fmt)["perplexity"]
    theirs = perplexity(exported(fmt)[0], wikitext, window=WINDOW, windows=WINDOWS)
    assert _rel(theirs, sim) < 0.01, (fmt, sim, theirs)
    assert sim > ref.perplexity  # quantization costs something


def test_activation_rounding_explains_the_residual(simulated: Any, in_llama: Any) -> None:
    weight_only, both, theirs = simulated("q8_0"), simulated("q8_0", True), in_llama("q8_0")
    assert _rel(theirs["kl"], both["kl"]) < 0.1, (weight_only, both, theirs)
    assert weight_only["kl"] < 0.5 * theirs["kl"]
    # Top-1 agreement with the reference is a rate over n = 1,022 tokens, and the two runs do not
    # flip the same tokens (ggml's SIMD rounding and summation order differ from qlab's: on the
    # portable AVX2 build their argmaxes differ on 4.4 % of tokens), so the two rates differ by
    # sampling noise of sd sqrt(q / n), q the fraction where the runs disagree with each other.
    # q <= (1 - a_theirs) + (1 - a_both) (a disagreement needs one of them off the reference):
    # allow two such sd (0.018 here; measured 0.0078 on the AVX2 build).
    n = theirs["n_tokens"]
    q_max = (1 - theirs["top1"]) + (1 - both["top1"])
    assert abs(theirs["top1"] - both["top1"]) <= 2 * (q_max / n) ** 0.5
    assert theirs["top1"] < weight_only["top1"]
    # the float32 model alone: rounding its inputs costs far more than llama.cpp's F32 path differs
    assert simulated("f32", True)["kl"] > 100 * in_llama("f32")["kl"]


def test_llama_perplexity_protocol_matches_llama_cpp(exported: Any, smollm2: Any, wikitext: str) -> None:
    """``protocol="llama-perplexity"`` (llama.cpp's ``llama-perplexity``: second half of each chunk
    scored) on qlab's F32 GGUF: qlab's float model and llama.cpp agree within 0.1 % (2 chunks of
    256 tokens), and llama.cpp's KL report against qlab's reference scores the same tokens."""
    from qlab.backends.llamacpp import kl_report
    from qlab.eval import perplexity as qlab_perplexity
    from qlab.eval import reference

    path, _ = exported("f32")
    kw = dict(window=256, windows=2, protocol="llama-perplexity")
    ours = qlab_perplexity(smollm2, wikitext, progress=False, **kw)
    theirs = perplexity(path, wikitext, **kw)
    print(f"llama-perplexity 2 x 256: qlab {ours:.5f}, llama.cpp {theirs:.5f}")
    assert _rel(theirs, ours) < 1e-3, (ours, theirs)
    assert _rel(ours, qlab_perplexity(smollm2, wikitext, 256, 2, progress=False)) > 0.01  # another protocol
    ref = reference(smollm2, wikitext, progress=False, **kw)
    rep = kl_report(path, ref)
    s = rep.stats
    assert s["n_tokens"] == 2 * (256 - 1 - 128) and set(rep.position) == set(range(129, 256))
    assert s["ppl"] == pytest.approx(theirs, rel=1e-4)  # float32 vs float64 log-softmax
    assert s["ppl_base"] == pytest.approx(ours, rel=1e-9)
    assert s["kl"] < 1e-4 and s["same_top"] > 0.98 and s["cor_ln_ppl"] > 0.999


def test_llama_perplexity_protocol_with_bos(exported: Any, wikitext: str, tmp_path: Any) -> None:
    """A vocabulary that adds BOS (qlab's F32 file with ``tokenizer.ggml.add_bos_token`` set by
    gguf-py): llama.cpp and qlab (the model loaded from that file) both put BOS first in the text
    and in place of every chunk's first token, and agree on the perplexity within 0.1 %."""
    import shutil

    import gguf

    from qlab.backends.llamacpp import window_logits
    from qlab.eval import perplexity as qlab_perplexity
    from qlab.eval import token_windows
    from qlab.models import load

    path = tmp_path / "bos.gguf"
    shutil.copy(exported("f32")[0], path)
    reader = gguf.GGUFReader(path, "r+")
    field = reader.fields["tokenizer.ggml.add_bos_token"]
    field.parts[field.data[0]][0] = True
    reader.data.flush()
    del reader
    bos = 1  # SmolLM2's tokenizer.ggml.bos_token_id
    plain = tokenize(path, wikitext[:4000])
    theirs_ids = np.stack([ids for ids, _ in window_logits(path, wikitext, 64, 2, protocol="llama-perplexity")])
    want = np.asarray([bos, *plain[:127]]).reshape(2, 64)
    want[:, 0] = bos
    np.testing.assert_array_equal(theirs_ids, want)
    m = load(path, progress=False)
    np.testing.assert_array_equal(token_windows(m, wikitext, 64, 2, protocol="llama-perplexity").numpy(), want)
    kw = dict(window=256, windows=2, protocol="llama-perplexity")
    ours, theirs = qlab_perplexity(m, wikitext, progress=False, **kw), perplexity(path, wikitext, **kw)
    assert _rel(theirs, ours) < 1e-3, (ours, theirs)
