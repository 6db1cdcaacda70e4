"""Rotations (incoherence processing) fused into a LLaMA-style model: QuaRot (Ashkboos et al., 2024,
arXiv:2404.00456) and SpinQuant (Liu et al., 2024, arXiv:2405.16406) without learning.

An orthogonal ``Q`` (``Q Q^T = I``) cancels in a product, ``x W^T = (x Q)(W Q)^T``, but spreads an
outlier feature of ``x`` over all features of ``x Q``, so per-token 4-bit activations lose less.

**Matrices.** Hadamard ``H`` (entries +-1, ``H H^T = n I``; used as ``H / sqrt(n)``): Sylvester's
``H_2k = [[H_k, H_k], [H_k, -H_k]]`` for powers of two, and for ``n = m * 2**k`` the Kronecker
product ``H_m (x) H_2**k`` with ``H_m`` from Paley's constructions (R. E. A. C. Paley, 1933, "On
orthogonal matrices", J. Math. Phys. 12): type I, order ``q + 1`` for a prime ``q = 3 mod 4``
(``H = I + S``, ``S = [[0, 1^T], [-1, Q]]``, ``Q_ij = chi(j - i)``, ``chi`` the quadratic
character mod ``q``); type II, order ``2 (q + 1)`` for a prime ``q = 1 mod 4`` (each entry of the
symmetric conference matrix ``[[0, 1^T], [1, Q]]`` becomes a 2 x 2 block). SmolLM2: 576 = 36 * 16
(Paley II, q = 17), 1536 = 12 * 128 (Paley I, q = 11), head_dim 64. Random orthogonal: QR of a
seeded Gaussian matrix with the signs of ``diag(R)`` fixed (Haar measure; Mezzadri, 2007).

**Fusion** (:func:`rotate_model`, QuaRot section 4 / SpinQuant R1, R2, R4), float model unchanged:

1. fold every RMSNorm's weight ``g`` into the Linears that read it (``W <- W diag(g)``, ``g <- 1``;
   the final norm into ``lm_head``, which is untied from the embedding), so the norms commute with
   ``Q`` (``RMSNorm(x Q) = RMSNorm(x) Q``: ``||x Q|| = ||x||``);
2. residual stream (R1): embedding ``E <- E Q``; readers ``q/k/v/gate/up_proj``, ``lm_head``:
   ``W <- W Q``; writers ``o_proj``, ``down_proj``: ``W <- Q^T W``;
3. value/output per head (R2): ``v_proj`` rows of each KV head ``<- H_d^T W``, the matching
   ``o_proj`` columns of every attention head ``<- W H_d`` (GQA: heads share a KV head's rotation);
4. ``online=True`` (R4): ``down_proj``'s input is rotated at run time by ``H / sqrt(n)`` (a forward
   pre-hook, registered before any quantization hook) and ``W_down <- W_down H / sqrt(n)``.

**Entry point.** ``qlab.quantize_(m, RotationConfig(kind="hadamard"))`` runs :func:`rotate_model`
and returns a :class:`~qlab.quantize.api.PipelineReport` (every Linear still float32); a following
``quantize_(m, WeightOnlyConfig(...))`` / ``GPTQConfig(...)`` / ``PTQConfig(...)`` quantizes the
rotated weights (GPTQ's calibration hooks run after the online rotation, so ``down_proj``'s Hessian
is that of its rotated input), as QuaRot's W4A16 / W4A4 pipelines (rotation, then RTN or GPTQ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.model import ModelLike, torch_module
from ._report import LayerQuant, PipelineReport
from .config_base import QuantConfig

KINDS = ("hadamard", "random")


def _prime(q: int) -> bool:
    return q > 1 and all(q % d for d in range(2, int(q**0.5) + 1))


def _chi(q: int) -> list[int]:
    """Quadratic character mod prime ``q``: 0 at 0, +1 on squares, -1 elsewhere."""
    squares = {(i * i) % q for i in range(1, q)}
    return [0] + [1 if a in squares else -1 for a in range(1, q)]


def paley(n: int) -> torch.Tensor:
    """A Hadamard matrix of order ``n`` by Paley's construction I (``n - 1`` prime, ``= 3 mod 4``)
    or II (``n / 2 - 1`` prime, ``= 1 mod 4``), float64 +-1 entries."""
    q = n - 1
    if _prime(q) and q % 4 == 3:
        c = _chi(q)
        Q = torch.tensor([[c[(j - i) % q] for j in range(q)] for i in range(q)], dtype=torch.float64)
        S = torch.zeros(n, n, dtype=torch.float64)
        S[0, 1:], S[1:, 0], S[1:, 1:] = 1.0, -1.0, Q
        return torch.eye(n, dtype=torch.float64) + S
    q = n // 2 - 1
    if n % 2 == 0 and _prime(q) and q % 4 == 1:
        c = _chi(q)
        Q = torch.tensor([[c[(j - i) % q] for j in range(q)] for i in range(q)], dtype=torch.float64)
        C = torch.zeros(q + 1, q + 1, dtype=torch.float64)
        C[0, 1:], C[1:, 0], C[1:, 1:] = 1.0, 1.0, Q
        zero = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
        one = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        return torch.kron(C, one) + torch.kron((C == 0).double(), zero)
    raise ValueError(f"no Paley construction of order {n}: need n - 1 a prime = 3 mod 4, or n/2 - 1 a prime = 1 mod 4")


def hadamard(n: int) -> torch.Tensor:
    """A Hadamard matrix of order ``n`` (float64, +-1 entries, ``H H^T = n I``): Sylvester for
    powers of two, else ``paley(m) (x) sylvester(n / m)`` with the largest power of two split off."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    k = n & -n  # largest power of two dividing n
    m = n // k
    if m == 1:
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < n:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        return h
    for mm in (m, 2 * m, 4 * m):  # a Paley order m * 2^j with 2^j dividing k
        if k % (mm // m) == 0:
            try:
                return torch.kron(paley(mm), hadamard(n // mm))
            except ValueError:
                continue
    raise ValueError(f"no Hadamard matrix of order {n} from Sylvester x Paley (m = {m}); valid e.g. 576, 1536, 2^k")


def orthogonal(n: int, kind: str = "hadamard", seed: int = 0) -> torch.Tensor:
    """An ``n x n`` orthogonal matrix (float64): ``"hadamard"`` (``H / sqrt(n)``) or ``"random"``
    (Haar, seeded)."""
    if kind == "hadamard":
        return hadamard(n) / n**0.5
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r))
    raise ValueError(f"kind must be 'hadamard' or 'random', got {kind!r}")


def _set(lin: nn.Linear | nn.Embedding, w: torch.Tensor) -> None:
    lin.weight.data = w.to(lin.weight.dtype).contiguous()


def _fold_norm(norm: nn.Module, readers: list[nn.Linear]) -> None:
    g = norm.weight.detach().double()
    for lin in readers:
        _set(lin, lin.weight.detach().double() * g)
    norm.weight.data = torch.ones_like(norm.weight)


def _online_hook(h: torch.Tensor) -> Any:
    h32 = h.float()

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        return ((x.float() @ h32).to(x.dtype), *args[1:])

    return hook


def rotate_model(model: ModelLike, kind: str = "hadamard", seed: int = 0, online: bool = True, heads: bool = True) -> dict[str, Any]:
    """Fuse rotations into a LLaMA-style causal LM in place (see the module docstring); the float
    model computes the same function (to rounding). Returns what was done."""
    mod = torch_module(model)
    inner = getattr(mod, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(mod, "lm_head"):
        raise ValueError(f"rotate_model needs a LLaMA-style causal LM (model.layers, lm_head), got {type(mod).__name__}")
    if getattr(mod, "_qlab_quantized", None) or getattr(mod, "_qlab_rotated", None):
        raise ValueError("rotate a fresh float model, before quantizing it (and only once)")
    cfg = mod.config
    d, hd = cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    Q = orthogonal(d, kind, seed)
    Hd = orthogonal(hd, "hadamard")
    Hi = orthogonal(cfg.intermediate_size, "hadamard")
    with torch.no_grad():
        emb = inner.embed_tokens
        mod.lm_head.weight = nn.Parameter(mod.lm_head.weight.detach().clone())  # untie from the embedding
        cfg.tie_word_embeddings = False
        _fold_norm(inner.norm, [mod.lm_head])
        _set(emb, emb.weight.detach().double() @ Q)
        _set(mod.lm_head, mod.lm_head.weight.detach().double() @ Q)
        for layer in inner.layers:
            at, mlp = layer.self_attn, layer.mlp
            _fold_norm(layer.input_layernorm, [at.q_proj, at.k_proj, at.v_proj])
            _fold_norm(layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj])
            for lin in (at.q_proj, at.k_proj, at.v_proj, mlp.gate_proj, mlp.up_proj):
                _set(lin, lin.weight.detach().double() @ Q)
            for lin in (at.o_proj, mlp.down_proj):
                _set(lin, Q.T @ lin.weight.detach().double())
            if heads:
                wv = at.v_proj.weight.detach().double().view(-1, hd, d)  # (kv heads, hd, d)
                _set(at.v_proj, (Hd.T @ wv).reshape(-1, d))
                wo = at.o_proj.weight.detach().double().view(d, -1, hd)  # (d, heads, hd)
                _set(at.o_proj, (wo @ Hd).reshape(d, -1))
            if online:
                _set(mlp.down_proj, mlp.down_proj.weight.detach().double() @ Hi)
                mlp.down_proj.register_forward_pre_hook(_online_hook(Hi))
    mod._qlab_rotated = {"kind": kind, "seed": seed, "online": online, "heads": heads, "gqa_group": group}
    return dict(mod._qlab_rotated)


@dataclass(frozen=True)
class RotationConfig(QuantConfig):
    """Fuse rotations into a LLaMA-style float model (:func:`rotate_model`; QuaRot, SpinQuant
    without learning): ``kind`` of the residual-stream rotation R1 (``"hadamard"`` or a seeded Haar
    ``"random"`` orthogonal matrix, ``seed``), ``online`` Hadamard on ``down_proj``'s input (R4),
    ``heads``: a Hadamard per value/output head (R2). Quantizes nothing: follow it with a weight /
    activation config. ``weights``/``activations``/``group_size``/``include``/``exclude`` must stay unset."""

    weights: str | None = None
    kind: str = "hadamard"
    seed: int = 0
    online: bool = True
    heads: bool = True

    method_module: ClassVar[str] = "qlab.quantize.rotation"

    def __post_init__(self) -> None:
        for name in ("weights", "activations", "group_size", "weight_granularity", "include", "exclude"):
            if getattr(self, name) is not None:
                raise ValueError(f"RotationConfig quantizes nothing; {name} must be None, got {getattr(self, name)!r} "
                                 "(quantize afterwards with a second quantize_ call)")  # fmt: skip
        if self.weight_options or self.activation_options:
            raise ValueError("RotationConfig quantizes nothing; weight_options / activation_options must be empty")
        super().__post_init__()
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        for name in ("online", "heads"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def label(self) -> str:
        return f"Rotation {self.kind}" + (" + online down_proj" if self.online else "") + (" + heads" if self.heads else "")


def _what(name: str, online: bool, heads: bool) -> str:
    """The rotations fused into the Linear ``name`` (module docstring, steps 1-4)."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "o_proj":
        return "Q^T W H_d" if heads else "Q^T W"
    if leaf == "down_proj":
        return "Q^T W H (input: online x H)" if online else "Q^T W"
    return "H_d^T W diag(g) Q" if heads and leaf == "v_proj" else "W diag(g) Q"


def run_rotation(model: ModelLike, config: RotationConfig, calibration: Any = None, **kwargs: Any) -> PipelineReport:
    """``quantize_`` method of :class:`RotationConfig`: :func:`rotate_model`, and a report whose
    rows are the Linears it changed (all float32)."""
    if calibration is not None or kwargs:
        raise ValueError(f"RotationConfig takes no calibration or options, got calibration={type(calibration).__name__}, "
                         f"options={sorted(kwargs)}")  # fmt: skip
    info = rotate_model(model, kind=config.kind, seed=config.seed, online=config.online, heads=config.heads)
    mod = torch_module(model)
    layers = [LayerQuant(name=n, kind="Linear", shape=tuple(m.weight.shape), params=m.weight.numel(), weights="float32",
                         activations="float", nbytes=4 * m.weight.numel(), note=_what(n, config.online, config.heads))
              for n, m in mod.named_modules() if isinstance(m, nn.Linear)]  # fmt: skip
    total = sum(p.numel() for p in mod.parameters())
    other = total - sum(r.params for r in layers)
    return PipelineReport(method=config.label(), layers=layers, other_params=other, config=config.to_dict(), extra=info)


def _register() -> None:
    from .api import register_method

    register_method(RotationConfig, run_rotation)


_register()

__all__ = ["KINDS", "RotationConfig", "paley", "hadamard", "orthogonal", "rotate_model", "run_rotation"]
