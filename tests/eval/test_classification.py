"""digits-cnn accuracy on the deterministic test split."""

from __future__ import annotations

import pytest
import torch

import qlab
from qlab.eval import accuracy, predict
from qlab.models.digits import load_split


def test_accuracy_of_the_committed_model():
    m = qlab.models.load("digits-cnn")
    x, y = load_split("test")
    acc = accuracy(m)
    assert 0.97 <= acc <= 1.0
    assert acc == (predict(m, x) == y).double().mean().item() == accuracy(m, x, y)
    assert accuracy(m, split="train") >= acc - 0.01
    assert m.evaluate() == {"accuracy": acc}


def test_damaged_model_is_near_chance():
    m = qlab.models.load("digits-cnn")
    with torch.no_grad():
        m.model.fc2.weight.zero_()
    assert accuracy(m) < 0.2
    assert qlab.models.load("digits-cnn").evaluate()["accuracy"] >= 0.97  # the cache is untouched


def test_bad_arguments():
    m = qlab.models.load("digits-cnn")
    x, y = load_split("test")
    with pytest.raises(ValueError, match="both"):
        accuracy(m, x)
    with pytest.raises(ValueError, match="no images"):
        accuracy(m, x[:0], y[:0])
