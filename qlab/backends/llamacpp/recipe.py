"""Which GGML type each weight is written with: :func:`qlab.quantize.resolve_recipe`, mapped to GGUF.

The export uses the very resolver :func:`qlab.quantize_model` uses, so a recipe means the same in
simulation and in llama.cpp: a format name, a mapping ``{fnmatch pattern: format}`` (first match
wins, unmatched weights stay float32) or a llama.cpp mix (``"q4_k_m"``), with llama.cpp's
row-length fallback (SmolLM2's 576-column rows: Q4_K -> Q5_0, Q6_K -> Q8_0, ...) reported per
tensor. Tied weights (``lm_head`` = ``embed_tokens``) are one tensor with one type.

What is left here is the GGUF side: qlab's ``f32``/``fp16``/``bf16`` become GGML F32/F16/BF16,
GGML formats keep their names, and formats without a GGML type (``nf4``, ``fp8_e4m3``, ``int4``,
``mxfp8_*`` ...) are refused -- llama.cpp has no kernel for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...core.model import ModelLike
from ...formats.specs import GGML_TYPES

__all__ = ["FTYPES", "TensorChoice", "file_type", "ggml_type", "resolve_types"]

#: llama.cpp's ``enum llama_ftype`` (llama.h) for presets and for single-format recipes
FTYPES: dict[str, int] = {
    "f32": 0, "f16": 1, "fp16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
    "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15,
    "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "q2_k_s": 21, "iq4_nl": 25, "iq4_xs": 30,
    "bf16": 32, "tq1_0": 36, "tq2_0": 37,
    "iq2_xxs": 19, "iq2_xs": 20, "iq3_xxs": 23, "iq1_s": 24, "iq3_s": 26, "iq2_s": 28, "iq1_m": 31,
    # a pure K-quant recipe is closest to the "small" preset
    "q3_k": 11, "q4_k": 14, "q5_k": 16,
}  # fmt: skip
_FLOAT = {"f32": "f32", "fp16": "f16", "f16": "f16", "bf16": "bf16"}


@dataclass(frozen=True)
class TensorChoice:
    """The format the recipe asked for, the GGML type written, and why they differ ('' if not)."""

    requested: str
    used: str
    reason: str = ""
    fallback: bool = False  # llama.cpp's row-length fallback changed the type


def ggml_type(fmt: str) -> str:
    """GGML type name of a qlab format (``fp16`` -> ``f16``); ``ValueError`` if it has none."""
    key = str(fmt).lower()
    if key in _FLOAT:
        return _FLOAT[key]
    if key in GGML_TYPES:
        return key
    raise ValueError(
        f"format {fmt!r} has no GGML type, so llama.cpp cannot store it; "
        f"GGUF types: f32, fp16, bf16, {', '.join(k for k in GGML_TYPES if k not in _FLOAT)}"
    )


def resolve_types(
    model: ModelLike,
    recipe: Any,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> dict[str, TensorChoice]:
    """``{module name: TensorChoice}`` for every Linear/Embedding weight, tied aliases included."""
    from ...quantize.recipes import resolve_recipe, targets

    choices = resolve_recipe(model, recipe, include, exclude)
    out: dict[str, TensorChoice] = {}
    for t in targets(model):
        c = choices[t.name]
        tc = TensorChoice(c.requested.label(), ggml_type(c.used), c.reason, str(c.used) != str(c.requested))
        if c.used.options:
            raise ValueError(f"{t.name}: GGML types take no encode options, got {c.used.label()}")
        for name in (t.name, *t.aliases):
            out[name] = tc
    return out


def file_type(recipe: Any) -> int | None:
    """``general.file_type`` for a single-format or preset recipe; None (llama.cpp guesses) otherwise."""
    if recipe is None:
        return 0
    if not isinstance(recipe, str):
        return None
    return FTYPES.get(recipe.lower().removeprefix("llama:"))
