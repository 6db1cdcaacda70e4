"""Regenerate qlab's cached digits-cnn weights (``data/digits_cnn.pt``).

Trains :class:`qlab.models.digits.DigitsCNN` on the deterministic train split of scikit-learn's
8x8 digits with a fixed seed (well under a minute on 2 CPU cores), reports test accuracy and
writes the state dict. Usage::

    python scripts/train_digits.py [--epochs 20] [--out data/digits_cnn.pt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from qlab.models import digits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=digits.SEED)
    ap.add_argument("--out", type=Path, default=digits.weights_path())
    args = ap.parse_args()

    torch.set_num_threads(1)  # a 26k-parameter net: one thread is fastest (no sync overhead) and reproducible
    t0 = time.perf_counter()
    model = digits.train(epochs=args.epochs, seed=args.seed)
    x, y = digits.load_split("test")
    with torch.inference_mode():
        acc = (model(x).argmax(1) == y).float().mean().item()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
    print(
        f"digits-cnn: {sum(p.numel() for p in model.parameters()):,} parameters, test accuracy {acc:.2%} "
        f"({len(y)} images), trained in {time.perf_counter() - t0:.1f} s -> {args.out} "
        f"({args.out.stat().st_size / 1024:.0f} KiB)"
    )


if __name__ == "__main__":
    main()
