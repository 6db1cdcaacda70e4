"""qlab.analysis.claims: the measurements of lesson 15, against independent references (gguf-py's
size table and grids, a direct numpy Hessian, GPTQ's own objective, qlab's pruning by hand)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants as gq

from qlab.analysis import claims as C


@pytest.mark.parametrize(
    ("measured", "low", "high", "tol", "expected"),
    [
        (0.72, 0.75, None, 0.05, "holds"),
        (0.69, 0.75, None, 0.05, "partly holds"),
        (0.60, 0.75, None, 0.05, "does not hold"),
        (0.77, 0.75, 0.80, 0.0, "holds"),
        (0.85, 0.75, 0.80, 0.05, "holds"),
        (0.86, 0.75, 0.80, 0.05, "partly holds"),
    ],
)
def test_verdict(measured: float, low: float, high: float | None, tol: float, expected: str) -> None:
    assert C.verdict(measured, low, high, tol=tol) == expected


@pytest.mark.parametrize("bad", [{"measured": float("nan")}, {"low": 0.9, "high": 0.1}, {"tol": -1.0}, {"measured": "0.5"}])
def test_verdict_refuses_bad_input(bad: dict) -> None:
    args = {"measured": 0.5, "low": 0.4, "high": 0.6, "tol": 0.0} | bad
    with pytest.raises(ValueError):
        C.verdict(args.pop("measured"), args.pop("low"), args.pop("high"), **args)


def test_claim_refuses_unknown_verdict() -> None:
    with pytest.raises(ValueError, match="verdict"):
        C.Claim("x", "y", "true")


def test_size_rows_match_gguf_py_table() -> None:
    for r in C.size_rows(("q8_0", "q5_1", "q4_0")):
        values, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[r["format"].upper()]]
        assert r["bits_per_weight"] == 8 * nbytes / values
        assert r["vs_fp16"] == pytest.approx(1 - 8 * nbytes / values / 16)


def test_repacked_q4_0_has_q4_0_bits_per_weight() -> None:
    rows = {r["type"]: r for r in C.repacked_rows()}
    values, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType.Q4_0]
    # llama.cpp repack.h: sizeof(block<4, 4>) == 4 * sizeof(ggml_half) + QK8_0 * 2 == 72
    assert rows["q4_0_4_4"]["bytes"] == 72 and rows["q4_0_8_8"]["bytes"] == 144
    assert {r["bits_per_weight"] for r in rows.values()} == {8 * nbytes / values}


def test_iq_rows_grids_match_gguf_py() -> None:
    for r in C.iq_rows():
        cls = gq._type_traits[GGMLQuantizationType[r["format"].upper()]]
        assert (r["grid_points"], r["values_per_point"]) == cls.grid_shape
    assert {r["format"] for r in C.iq_rows() if r["requires_imatrix"]} == {"iq2_xxs", "iq2_xs"}


def test_file_rows() -> None:
    rows = C.file_rows([{"format": "f32", "mb": 100.0}, {"format": "q4_0", "mb": 14.0}], ["q4_0"])
    assert rows[0]["vs_fp32"] == pytest.approx(0.86) and rows[0]["vs_fp16"] == pytest.approx(0.72)
    with pytest.raises(ValueError, match="f32"):
        C.file_rows([{"format": "q4_0", "mb": 1.0}])
    with pytest.raises(ValueError, match="q8_0"):
        C.file_rows([{"format": "f32", "mb": 1.0}], ["q8_0"])


class _Tiny(torch.nn.Module):
    """An encoder-shaped toy: embedding, then ``encoder.layer.0.fc`` on (batch, seq, dim)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(50, 64)
        self.encoder = torch.nn.Module()
        self.encoder.layer = torch.nn.ModuleList([torch.nn.Module()])
        self.encoder.layer[0].fc = torch.nn.Linear(64, 24)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.layer[0].fc(self.emb(input_ids))


def _batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(3):
        ids = torch.randint(0, 50, (4, 10), generator=g)
        mask = torch.ones(4, 10, dtype=torch.long)
        mask[:, 7:] = 0  # padding: left out of the Hessian
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def test_linear_hessians_equal_numpy() -> None:
    m, batches = _Tiny(), _batches()
    h = C.linear_hessians(m, batches)["encoder.layer.0.fc"]
    x = np.concatenate([m.emb(b["input_ids"]).detach().numpy()[b["attention_mask"].numpy().astype(bool)] for b in batches])
    x = x.astype(np.float64)
    np.testing.assert_allclose(h.numpy(), 2 * x.T @ x / x.shape[0], rtol=1e-10)
    with pytest.raises(ValueError, match="include"):
        C.linear_hessians(m, batches, include="nothing.*")


def test_gptq_layerwise_beats_round_to_nearest_on_its_objective() -> None:
    m, batches = _Tiny(), _batches()
    w = m.encoder.layer[0].fc.weight.detach().clone()
    h = C.linear_hessians(m, batches)
    r = C.gptq_layerwise(m, h, bits=4, group_size=16)
    q = m.encoder.layer[0].fc.weight.detach()
    # every group of 16 holds at most 16 distinct values (the int4 grid), and the size is 4-bit + scales
    assert max(len(np.unique(g)) for g in q.numpy().reshape(-1, 16)) <= 16
    assert r["bytes"] == 24 * 64 // 2 + 24 * 4 * (4 + 1)
    from qlab import formats

    rtn = torch.from_numpy(formats.roundtrip(w.numpy(), "int4", granularity="group", group_size=16, symmetric=False))
    hh = h["encoder.layer.0.fc"].float()

    def loss(v: torch.Tensor) -> float:  # GPTQ's objective: tr((W - V) H (W - V)^T)
        d = w - v
        return float(torch.trace(d @ hh @ d.T))

    assert loss(q) < loss(rtn)


def test_pruning_row_digits() -> None:
    dense = C.pruning_row("digits-cnn", 4, 4)
    assert dense["bytes"] == dense["fp32_bytes"] and dense["pruned"] == 0.0
    half = C.pruning_row("digits-cnn", 2, 4, fmt="int8")
    assert half["pruned"] == 0.5 and half["smaller"] == pytest.approx(half["fp32_bytes"] / half["bytes"])
    assert 0.0 < half["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="unknown model"):
        C.pruning_row("resnet", 2, 4)
