"""digits-cnn: deterministic data split, committed weights, reproducible training."""

from __future__ import annotations

import pytest
import torch

from qlab.models import digits, load


def test_split_is_deterministic_and_disjoint():
    xtr, ytr = digits.load_split("train")
    xte, yte = digits.load_split("test")
    assert xtr.shape == (1347, 1, 8, 8) and xte.shape == (450, 1, 8, 8)
    assert xte.dtype == torch.float32 and 0 <= xte.min() and xte.max() <= 1
    assert torch.equal(digits.load_split("test")[0], xte) and torch.equal(digits.load_split("test")[1], yte)
    assert torch.bincount(yte).min() >= 43  # stratified: every class 43..46 times
    in_train = (xte.flatten(1)[:, None] == xtr.flatten(1)[None]).all(-1).any(1)
    assert in_train.sum() < 5  # disjoint rows (the data set itself holds a few duplicate images)
    with pytest.raises(ValueError, match="split"):
        digits.load_split("val")


def test_committed_weights_are_small_and_accurate():
    path = digits.weights_path()
    assert path.is_file() and path.stat().st_size < 200_000
    m = load("digits-cnn")
    assert m.kind == "image-classifier" and m.tokenizer is None and not m.model.training
    assert m.num_parameters == 26_314
    acc = m.evaluate()["accuracy"]
    assert 0.97 <= acc <= 1.0


def test_missing_weights_say_how_to_regenerate(tmp_path, monkeypatch):
    monkeypatch.setenv("QLAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="scripts/train_digits.py"):
        digits.build()


def test_training_is_reproducible():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as scripts/train_digits.py does: a tiny net trains fastest on one thread
    try:
        a, b = digits.train(epochs=1, batch_size=256), digits.train(epochs=1, batch_size=256)
    finally:
        torch.set_num_threads(threads)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
