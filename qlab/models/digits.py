"""digits-cnn: a small CNN trained by qlab on scikit-learn's bundled 8x8 handwritten digits.

The data set is UCI's "Optical Recognition of Handwritten Digits" test set as shipped inside
scikit-learn (``sklearn.datasets.load_digits``: 1,797 images, 8x8 pixels, values 0..16, 10
classes), so it is available offline. The split is deterministic (stratified, ``random_state=0``,
25 % test). The network is deliberately tiny (26k parameters) so static PTQ and QAT lessons run in
seconds; every weight row except the first convolution's (1x3x3 = 9 values) is a multiple of 32,
so block formats apply without fallback::

    conv1  1 -> 32, 3x3, pad 1, ReLU        (rows of 9)
    conv2 32 -> 32, 3x3, pad 1, ReLU, maxpool 2   (rows of 288)
    flatten 32x4x4 -> fc1 512 -> 32, ReLU   (rows of 512)
    fc2   32 -> 10                          (rows of 32)

The trained weights are committed at ``data/digits_cnn.pt``; ``scripts/train_digits.py``
regenerates them (fixed seed, well under a minute on 2 CPU cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .paths import data_dir

WEIGHTS_FILE = "digits_cnn.pt"
SEED = 0


class DigitsCNN(nn.Module):
    """The digits-cnn architecture (input ``(n, 1, 8, 8)`` float32 in [0, 1], output 10 logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def weights_path() -> Path:
    return data_dir() / WEIGHTS_FILE


def load_split(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (n, 1, 8, 8) float32 in [0, 1], labels (n,) int64)`` of the ``"train"`` or ``"test"`` split.

    Stratified 75/25 split of ``sklearn.datasets.load_digits`` with ``random_state=0``: the same
    images on every machine (450 test images). Pixels are divided by 16 (their maximum).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=0.25, stratify=d.target, random_state=SEED)
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))


def train(epochs: int = 20, seed: int = SEED, lr: float = 3e-3, batch_size: int = 32) -> DigitsCNN:
    """Train a fresh :class:`DigitsCNN` with Adam (deterministic for a given seed and torch build)."""
    torch.manual_seed(seed)
    x, y = load_split("train")
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


def build(path: str | Path | None = None) -> DigitsCNN:
    """The trained digits-cnn from its cached weights (``data/digits_cnn.pt`` by default)."""
    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"digits-cnn weights not found at {path}. Regenerate them (about 30 s on 2 cores) with\n"
            f"    python scripts/train_digits.py\n"
            f"or point $QLAB_DATA at a directory holding {WEIGHTS_FILE}."
        )
    model = DigitsCNN()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


__all__ = ["DigitsCNN", "build", "data_dir", "load_split", "train", "weights_path"]
