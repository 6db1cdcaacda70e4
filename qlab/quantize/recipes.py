"""Recipes: which format every weight of a model gets, including llama.cpp's named mixes.

A recipe is one of

* a **format name** (``"q4_0"``, ``"nf4"``, ``"int4"``) or ``(name, options)``: every linear /
  embedding / conv weight gets that format (llama-quantize's ``--pure``);
* a **mapping** ``{pattern: format}``: fnmatch patterns tried in order against the module name
  (``model.layers.3.self_attn.v_proj``), its tied aliases (``lm_head``) and its GGUF tensor name
  (``blk.3.attn_v.weight``); the first match wins, unmatched weights stay float32. A value of
  ``None``/``"f32"`` keeps the weight, ``"f16"`` stores it as float16;
* a **llama.cpp mix** name (``"q4_k_m"``, ``"q3_k_l"`` ... see :data:`MIXES`; prefix ``"llama:"``
  for the mixes whose name is also a format, e.g. ``"llama:q4_0"``, ``"llama:q2_k"``).

A bare name that is both (``"q2_k"``, ``"q6_k"``, ``"q4_0"`` ...) is the *pure* format, as with
``llama-quantize --pure``: on SmolLM2 the pure ``q2_k`` is 69.6 MB, the llama.cpp file type Q2_K
(``"llama:q2_k"``: ``attn_v``/``attn_output``/``ffn_down`` in Q3_K, the tied embedding in Q8_0) is
86.4 MB. Where a mix is meant, write it with :func:`as_mix`; :func:`recipe_label` names a recipe
unambiguously for tables and readouts.

Mixes reproduce ``llama_tensor_get_type`` of llama.cpp's ``src/llama-quant.cpp`` for dense
LLaMA-like models without an importance matrix (the K-quant mixes of Kawrakow, llama.cpp PR #1684):

* the output tensor -- and the token embedding when it is tied to the output, as in SmolLM2 --
  gets Q6_K, or Q8_0 when its row length is not a multiple of the default type's block;
* ``attn_v`` and ``ffn_down`` get more bits in some layers. ``use_more_bits(i, n)`` is true for
  the first n/8 and the last n/8 layers and every third layer in between:
  Q4_K_M / Q5_K_M -> Q6_K there; Q4_K_S -> Q5_K for the first 4 ``attn_v`` and the first n/8
  ``ffn_down``; Q3_K_M -> ``attn_v`` Q5_K for the first 2 layers, else Q4_K, ``ffn_down`` Q5_K for
  the first n/16 layers, else Q4_K, ``attn_output`` Q4_K; Q3_K_L -> Q5_K for all three;
  Q2_K -> ``attn_v`` Q3_K (Q4_K when n_head/n_head_kv >= 4), ``ffn_down``/``attn_output`` Q3_K.

After the choice, ``tensor_type_fallback`` applies when the row length is not a multiple of the
block (SmolLM2's rows are 576 = 2.25 x 256): IQ4_XS -> IQ4_NL; Q2_K, Q3_K, TQ1_0, TQ2_0 -> Q4_0;
Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; and F16 when even that does not fit (older llama.cpp
releases sent Q2_K/Q3_K to IQ4_NL; this follows the release llama-cpp-python bundles). qlab's
non-GGML formats have no llama.cpp rule: a row they cannot take stays float16. Every such
change is reported per tensor, never silent. The tests check these choices against
``llama_model_quantize`` (dry run) of the bundled llama.cpp.

Example, SmolLM2-135M under Q4_K_M: only ``ffn_down`` (rows of 1536) can hold Q4_K (16 layers)
or the Q6_K of ``use_more_bits`` (14 layers); the 576-wide rows of every other projection fall
back to Q5_0 (166 tensors), the ``attn_v`` that asked for Q6_K to Q8_0 (14), and the tied
embedding is Q8_0: 103.7 MB, 6.17 bits per weight -- the same size llama.cpp reports.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

import torch

from .. import formats
from ..core.model import ModelLike, torch_module
from .llamacpp_mixes import MIXES, is_mix, mix_choices

KEEP = "f32"

#: llama.cpp's GGML fallback types for rows that are not whole super-blocks (``tensor_type_fallback``)
GGML_FALLBACK = {
    **dict.fromkeys(("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s"), "iq4_nl"),
    "iq4_xs": "iq4_nl",
    "q2_k": "q4_0",
    "q3_k": "q4_0",
    "tq1_0": "q4_0",
    "tq2_0": "q4_0",
    "q4_k": "q5_0",
    "q5_k": "q5_1",
    "q6_k": "q8_0",
}

class Spec(str):
    """A format name (``"q4_0"``, ``"f32"`` for "keep") that also carries encode ``options``.

    It *is* a ``str``, so ``spec == "q4_0"`` and f-strings work; ``options`` holds non-default
    encode options (``Spec("int4", {"group_size": 64})``).
    """

    options: dict[str, Any]

    def __new__(cls, name: str, options: Mapping[str, Any] | None = None) -> Spec:
        s = super().__new__(cls, name)
        s.options = dict(options or {})
        return s

    def __repr__(self) -> str:
        if not self.options:
            return repr(str(self))
        return f"{self!s}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    def label(self) -> str:
        """Readable name with options, e.g. ``int4(group_size=64)``."""
        return repr(self) if self.options else str(self)


def spec(value: Any) -> Spec:
    """Normalise a recipe value: ``None``/"f32"/"keep" -> keep, "f16" -> fp16, a format name or
    ``(name, options)``. Unknown names and bad options raise ``ValueError``."""
    if isinstance(value, Spec):
        return value
    if value is None or (isinstance(value, str) and value.lower() in ("f32", "fp32", "float32", "keep")):
        return Spec(KEEP)
    options: dict[str, Any] = {}
    if isinstance(value, tuple | list):
        if len(value) != 2 or not isinstance(value[1], Mapping):
            raise ValueError(f"a format with options is written (name, {{option: value}}), got {value!r}")
        value, options = value[0], dict(value[1])
    if not isinstance(value, str):
        raise TypeError(f"a recipe value must be a format name, (name, options) or None; got {value!r}")
    name = {"f16": "fp16", "float16": "fp16"}.get(value.lower(), value.lower())
    fmt = formats.get(name)
    fmt.options(**options)  # validates option names and values
    return Spec(fmt.name, options)


class Choice(NamedTuple):
    """What happens to one weight: the format asked for, the one used, and why they differ."""

    requested: Spec
    used: Spec
    reason: str


# -- the weights a recipe applies to ---------------------------------------------------------------
_LAYERED = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
# HF module name -> llama.cpp tensor name (gguf-py ``tensor_mapping.py``), LLaMA and BERT families
_GGUF_NAMES = [
    (r"(?:.*\.)?embed_tokens", "token_embd"),
    (r"(?:.*\.)?lm_head", "output"),
    (r".*layers\.(\d+)\.self_attn\.q_proj", "blk.{}.attn_q"),
    (r".*layers\.(\d+)\.self_attn\.k_proj", "blk.{}.attn_k"),
    (r".*layers\.(\d+)\.self_attn\.v_proj", "blk.{}.attn_v"),
    (r".*layers\.(\d+)\.self_attn\.o_proj", "blk.{}.attn_output"),
    (r".*layers\.(\d+)\.mlp\.gate_proj", "blk.{}.ffn_gate"),
    (r".*layers\.(\d+)\.mlp\.up_proj", "blk.{}.ffn_up"),
    (r".*layers\.(\d+)\.mlp\.down_proj", "blk.{}.ffn_down"),
    (r"(?:.*\.)?embeddings\.word_embeddings", "token_embd"),
    (r"(?:.*\.)?embeddings\.position_embeddings", "position_embd"),
    (r"(?:.*\.)?embeddings\.token_type_embeddings", "token_types"),
    (r".*layer\.(\d+)\.attention\.self\.query", "blk.{}.attn_q"),
    (r".*layer\.(\d+)\.attention\.self\.key", "blk.{}.attn_k"),
    (r".*layer\.(\d+)\.attention\.self\.value", "blk.{}.attn_v"),
    (r".*layer\.(\d+)\.attention\.output\.dense", "blk.{}.attn_output"),
    (r".*layer\.(\d+)\.intermediate\.dense", "blk.{}.ffn_up"),
    (r".*layer\.(\d+)\.output\.dense", "blk.{}.ffn_down"),
]
_GGUF_RE = [(re.compile(p), n) for p, n in _GGUF_NAMES]


def gguf_name(module_name: str) -> str | None:
    """llama.cpp's tensor name for a module's weight (``blk.3.attn_v.weight``), if it has one."""
    for pat, name in _GGUF_RE:
        m = pat.fullmatch(module_name)
        if m:
            return name.format(*m.groups()) + ".weight"
    return None


@dataclass(frozen=True, eq=False)
class Target:
    """One weight tensor a recipe applies to. Tied modules (``lm_head`` sharing
    ``embed_tokens.weight``) are one target: the first module by name, the others in ``aliases``."""

    name: str
    module: torch.nn.Module
    aliases: tuple[str, ...] = ()

    @property
    def weight(self) -> torch.nn.Parameter:
        return self.module.weight

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.module.weight.shape)

    @property
    def row_length(self) -> int:
        """Values per row as stored: ``in_features`` (Linear), the embedding dim, or in*kh*kw (conv)."""
        return math.prod(self.shape[1:])

    @property
    def numel(self) -> int:
        return self.module.weight.numel()

    @property
    def gguf_name(self) -> str | None:
        return gguf_name(self.name)

    @property
    def category(self) -> str:
        """llama.cpp's tensor category (``attn_v``, ``ffn_down``, ``token_embd``, ...) or ``other``."""
        g = self.gguf_name
        return re.sub(r"^blk\.\d+\.", "", g)[: -len(".weight")] if g else "other"

    def matches(self, pattern: str) -> bool:
        names = (self.name, *self.aliases, self.gguf_name or "")
        return any(fnmatchcase(n, pattern) for n in names if n)


def targets(model: ModelLike) -> list[Target]:
    """Every Linear / Embedding / Conv weight of ``model`` once, in module order."""
    found: dict[int, tuple[str, torch.nn.Module, list[str]]] = {}
    for name, mod in torch_module(model).named_modules(remove_duplicate=False):
        w = getattr(mod, "weight", None)
        if not isinstance(mod, _LAYERED) or not isinstance(w, torch.Tensor) or w.ndim < 2:
            continue
        if id(w) in found:
            if name not in found[id(w)][2] and name != found[id(w)][0]:
                found[id(w)][2].append(name)
        else:
            found[id(w)] = (name, mod, [])
    return [Target(n, m, tuple(a)) for n, m, a in found.values()]


# -- resolving a recipe -----------------------------------------------------------------------------
def _patterns(p: str | Iterable[str] | None, what: str = "include") -> list[str] | None:
    if p is None:
        return None
    pats = [p] if isinstance(p, str) else list(p) if isinstance(p, Iterable) else [p]
    for q in pats:
        if not isinstance(q, str) or not q:
            raise ValueError(
                f"{what}: patterns must be non-empty strings (fnmatch, e.g. 'model.layers.*.mlp.*'), got {q!r}"
            )
    return pats


def _check_matches(tg: list[Target], what: str, pats: Iterable[str]) -> None:
    """Every pattern must select at least one weight: a typo must not be a silent no-op."""
    missing = [p for p in pats if not any(t.matches(p) for t in tg)]
    if missing:
        names = [t.name for t in tg[:4]] + ([tg[0].gguf_name] if tg[0].gguf_name else [])
        raise ValueError(
            f"{what} pattern(s) {missing} match no weight of the model ({len(tg)} weights); names look "
            f"like {', '.join(repr(n) for n in names)}{', ...' if len(tg) > 4 else ''} (fnmatch patterns "
            f"on module names, tied aliases and GGUF names; see qlab.quantize.recipes.targets(model))"
        )


def fallback(requested: Spec, row_length: int) -> tuple[Spec, str]:
    """The format used for rows of ``row_length`` when ``requested`` cannot take them, and why."""
    if requested == KEEP:
        return requested, ""
    fmt = formats.get(requested)
    if fmt.accepts_row(row_length, **requested.options):
        return requested, ""
    why = f"row length {row_length} does not fit {requested.label()}"
    if fmt.family == "gguf":
        why = f"row length {row_length} is not a multiple of {requested}'s block {fmt.block_size}"
    if fmt.family == "gguf" and requested in GGML_FALLBACK:
        alt = Spec(GGML_FALLBACK[requested])
        if formats.get(alt).accepts_row(row_length):
            return alt, f"{why}: llama.cpp falls back to {alt}"
        return Spec("fp16"), f"{why}, nor {alt}'s: llama.cpp falls back to f16"
    rule = "llama.cpp has no fallback for it" if fmt.family == "gguf" else "no llama.cpp rule"
    return Spec("fp16"), f"{why} ({rule}): kept as fp16"


def resolve_recipe(
    model: ModelLike,
    recipe: Any,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> dict[str, Choice]:
    """``{module name: Choice(requested, used, reason)}`` for every weight target of ``model``.

    ``include``/``exclude`` are fnmatch patterns (module name, alias or GGUF name); weights left
    out are kept in float32 (``"f32"``). ``used`` is what ``quantize_model`` applies and what a
    GGUF export writes (``f32`` / ``fp16`` = GGML F32 / F16).
    """
    tg = targets(model)
    inc, exc = _patterns(include, "include"), _patterns(exclude, "exclude")
    for what, pats in (("include", inc), ("exclude", exc)):
        if pats is not None and tg:
            _check_matches(tg, what, pats)
    if isinstance(recipe, Mapping) and tg:
        _check_matches(tg, "recipe", _patterns(list(recipe), "recipe") or [])
    if isinstance(recipe, str) and (recipe.lower().startswith("llama:") or is_mix(recipe)):
        chosen = _mix(model, tg, recipe.lower().removeprefix("llama:"))
    elif isinstance(recipe, Mapping):
        chosen = {}
        for t in tg:
            hit = next((p for p in recipe if t.matches(p)), None)
            chosen[t.name] = (spec(recipe[hit]), "") if hit is not None else (Spec(KEEP), "no recipe pattern matches")
    else:
        s = spec(recipe)
        chosen = {t.name: (s, "") for t in tg}
    out: dict[str, Choice] = {}
    for t in tg:
        req, why = chosen[t.name]
        if inc is not None and not any(t.matches(p) for p in inc):
            req, why = Spec(KEEP), "not in include"
        elif exc is not None and any(t.matches(p) for p in exc):
            req, why = Spec(KEEP), "excluded"
        used, fb = fallback(req, t.row_length)
        notes = [w for w in (why, fb) if w]
        if t.aliases and req != KEEP:
            notes.insert(0, f"tied with {', '.join(t.aliases)}: quantized once")
        out[t.name] = Choice(req, used, "; ".join(notes))
    asked = any(s != KEEP for s, _ in chosen.values())
    if asked and (inc is not None or exc is not None) and all(c.requested == KEEP for c in out.values()):
        raise ValueError(
            f"include={include!r} / exclude={exclude!r} leave no weight to quantize "
            f"(the recipe would be a no-op: 32 bits/weight)"
        )
    return out


def as_mix(name: str) -> str:
    """The unambiguous recipe of the llama.cpp mix ``name``: ``"llama:<name>"`` (``"Q2_K"`` ->
    ``"llama:q2_k"``, the file type, never the pure format). Unknown mixes raise ``ValueError``."""
    n = name.lower().removeprefix("llama:")
    if n not in MIXES:
        raise ValueError(f"unknown llama.cpp mix {name!r}; valid mixes: {', '.join(MIXES)}")
    return f"llama:{n}"


def recipe_label(recipe: Any) -> str:
    """A name for ``recipe`` that cannot be misread: ``"llama.cpp mix Q2_K"`` for a mix,
    ``"pure q2_k"`` for a format name that is also a mix's name, the format label otherwise."""
    if isinstance(recipe, str):
        n = recipe.lower()
        if n.startswith("llama:") or is_mix(n):
            return f"llama.cpp mix {n.removeprefix('llama:').upper()}"
        if n in MIXES:
            return f"pure {spec(n).label()}"
    if isinstance(recipe, Mapping):
        return f"recipe of {len(recipe)} patterns"
    return spec(recipe).label()


def get(name: str, model: ModelLike) -> dict[str, Spec]:
    """A llama.cpp mix as a plain recipe ``{module name: format}`` for ``model`` (editable)."""
    name = name.lower().removeprefix("llama:")
    if name not in MIXES:
        raise ValueError(f"unknown llama.cpp mix {name!r}; valid mixes: {', '.join(MIXES)}")
    return {n: s for n, (s, _) in _mix(model, targets(model), name).items()}


def _mix(model: ModelLike, tg: list[Target], ftype: str) -> dict[str, tuple[Spec, str]]:
    cfg = getattr(torch_module(model), "config", None)
    return {n: (Spec(f), why) for n, (f, why) in mix_choices(tg, ftype, cfg).items()}


__all__ = [
    "KEEP", "MIXES", "GGML_FALLBACK", "Spec", "Choice", "Target", "spec", "targets", "torch_module",
    "gguf_name", "fallback", "resolve_recipe", "get", "as_mix", "recipe_label",
]  # fmt: skip
