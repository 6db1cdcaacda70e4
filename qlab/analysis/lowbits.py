"""Extreme low bits (lesson 11): ternary weights, the low-bit grids, and error through depth.

* :func:`ternary_absmean` -- BitNet b1.58's weight quantizer (Ma et al. 2024, "The Era of 1-bit
  LLMs", arXiv:2402.17764, eq. 1-3): ``gamma = mean |W|`` over the tensor,
  ``W~ = RoundClip(W / (gamma + eps), -1, 1)``, and the weight the matmul effectively uses is
  ``gamma * W~`` (log2 3 = 1.58 bits of information per weight). BitNet *trains* with it; applied
  to a model trained in float (post-training), it throws away most of the weights' information.
* :data:`GRIDS` -- the low-bit choices a lesson compares, as qlab recipes (format, options).
* :func:`error_through_layers` -- the relative error of every block's output (residual stream)
  when the weights are quantized: small per-layer errors compound through the 30 blocks.
* :func:`layer_input`, :func:`output_error` -- what a pruned / quantized layer does to its output
  on real inputs (the quantity Wanda's score approximates).
* :func:`low_bits_table` -- the rows of ``data/cache/low_bits.json`` (``scripts/low_bits.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import formats
from ..core.model import Loaded

TERNARY_EPS = 1e-5  # BitNet b1.58's epsilon in W / (gamma + eps)
G32 = {"granularity": "group", "group_size": 32, "symmetric": False}
#: display name -> recipe value (a qlab format, (format, options), or "ternary" for :func:`ternary_absmean`)
GRIDS: dict[str, Any] = {
    "ternary absmean (BitNet b1.58)": "ternary",
    "tq1_0": "tq1_0",
    "tq2_0": "tq2_0",
    "int2 g32 (symmetric: ternary absmax)": ("int2", {"granularity": "group", "group_size": 32}),
    "int2 g32 (asymmetric, 4 levels)": ("int2", G32),
    "q2_k": "q2_k",
    "int3 g32": ("int3", G32),
    "q3_k": "q3_k",
    "q4_k": "q4_k",
    "q8_0": "q8_0",
}


def ternary_absmean(w: Any, eps: float = TERNARY_EPS) -> tuple[np.ndarray, float]:
    """BitNet b1.58 ternary codes in {-1, 0, 1} (int8) and the scale ``gamma`` of ``w``; the
    effective weight is ``codes * gamma``. Rounding is half to even (``np.rint``)."""
    x = formats.base.as_float32(w)
    if x.size == 0:
        raise ValueError("ternary_absmean needs a non-empty tensor")
    formats.base.check_finite("ternary_absmean", x)
    gamma = np.float32(np.abs(x).mean(dtype=np.float64))
    codes = np.clip(np.rint(x / (gamma + np.float32(eps))), -1, 1).astype(np.int8)
    return codes, float(gamma)


def grid_roundtrip(w: Any, grid: Any) -> tuple[np.ndarray, int, str]:
    """``(decoded, bytes, format used)`` of ``w (rows, cols)`` on ``grid`` (a :data:`GRIDS` value).

    llama.cpp's row-length fallback applies, as in :func:`qlab.quantize_model` (a 576-wide row
    cannot hold ``q2_k``'s 256-value super-blocks and is stored as ``q4_0``). Ternary absmean
    counts 2 bits per weight (the 2-bit packing BitNet kernels use) plus a float32 gamma.
    """
    from ..quantize.recipes import fallback, spec

    x = formats.base.as_float32(w)
    if grid == "ternary":
        codes, gamma = ternary_absmean(x)
        return (codes.astype(np.float32) * np.float32(gamma)), -(-x.size * 2 // 8) + 4, "ternary"
    used, _ = fallback(spec(grid), x.shape[-1])
    if used == "f32":
        return x.copy(), 4 * x.size, "f32"
    fmt = formats.get(used)
    enc = fmt.encode(x, **used.options)
    return fmt.decode(enc), int(enc.nbytes), used.label()


def error_through_layers(m: Loaded, recipe: Any, window: int = 128, text: str | None = None) -> list[float]:
    """Median over tokens of the relative error ``||h_q - h|| / ||h||`` of the hidden state after
    each block (index 0: the embedding output; the last: after the final norm) on one window of ``text`` (default: WikiText-2 test), ``recipe`` applied
    to a copy of the weights with :func:`qlab.quantize_model`; the model is restored."""
    from ..eval.perplexity import token_windows
    from ..quantize.model import WeightSnapshot, quantize_model
    from ..quantize.recipes import torch_module

    mod = torch_module(m)
    ids = token_windows(m, text, window, 1)
    snap = WeightSnapshot(m)

    def states() -> list[torch.Tensor]:
        with torch.inference_mode():
            return list(mod(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states)

    ref = states()
    try:
        quantize_model(m, recipe)
        got = states()
    finally:
        snap.restore(m)
    # the last hidden state of HF LLaMA is after the final norm; all others are raw block outputs
    # per token, then the median: a few tokens carry "massive activations" thousands of times larger
    # than the rest (lesson 06) and would otherwise dominate a whole-tensor norm
    return [float(((g - r).double().norm(dim=-1) / r.double().norm(dim=-1)).median()) for g, r in zip(got, ref, strict=True)]


def layer_input(m: Loaded, name: str, text: str | None = None, window: int = 128) -> torch.Tensor:
    """The input ``X (tokens, in_features)`` of module ``name`` on the first ``window`` tokens of
    ``text`` (default: :func:`qlab.eval.calibration_text`), captured with a forward hook."""
    from ..eval import calibration_text
    from ..eval.perplexity import token_windows
    from ..quantize.recipes import torch_module

    mod = torch_module(m)
    sub = dict(mod.named_modules()).get(name)
    if sub is None:
        raise ValueError(f"model has no module {name!r}")
    got: list[torch.Tensor] = []
    h = sub.register_forward_hook(lambda _m, inp, _o: got.append(inp[0].detach().reshape(-1, inp[0].shape[-1])))
    try:
        with torch.inference_mode():
            mod(input_ids=token_windows(m, calibration_text() if text is None else text, window, 1), use_cache=False)
    finally:
        h.remove()
    return got[0].clone()


def output_error(x: Any, w: Any, w_hat: Any) -> float:
    """Relative error of a Linear layer's output, ``||X (W_hat - W)^T|| / ||X W^T||`` (float64)."""
    x64, w64, wh64 = (torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in (x, w, w_hat))
    return float((x64 @ (wh64 - w64).T).norm() / (x64 @ w64.T).norm())


def low_bits_table(payload: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of the ``low_bits`` cache sorted by bytes, each with ``ratio`` = perplexity / float's."""
    from .. import cache

    p = cache.load("low_bits") if payload is None else payload
    rows = [dict(r) for r in p["rows"]]
    need = {"name", "kind", "perplexity", "total_bytes", "bits_per_weight"}
    for r in rows:
        if not need <= r.keys():
            raise ValueError(f"low_bits row {r.get('name')!r} lacks {sorted(need - r.keys())}")
    base = next((r["perplexity"] for r in rows if r["kind"] == "reference"), None)
    if base is None:
        raise ValueError("the low_bits cache has no float reference row")
    for r in rows:
        r["ratio"] = r["perplexity"] / base
    return sorted(rows, key=lambda r: -r["total_bytes"])


__all__ = ["ternary_absmean", "grid_roundtrip", "error_through_layers", "layer_input", "output_error",
           "low_bits_table", "GRIDS"]  # fmt: skip
