"""Give every widget output of the lessons a static HTML snapshot (``qlab.viz.snapshot``).

Run after executing a lesson (``nbconvert --execute`` writes widget outputs without one), before
``scripts/build_ko.py``:

    python scripts/widget_snapshots.py           # add/refresh the snapshots in notebooks/*.ipynb
    python scripts/widget_snapshots.py --check   # fail if an output lacks its snapshot or it is stale

Notebooks are read and written with nbformat (its on-disk layout), atomically.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

from qlab.files import write_text
from qlab.viz.snapshot import add_snapshots

ROOT = Path(__file__).resolve().parents[1]


def lessons() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def snapshotted(path: Path) -> tuple[str, str, int]:
    """(text on disk, text with snapshots, widget outputs)."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    new = copy.deepcopy(nb)
    n = add_snapshots(new)
    return text, nbformat.writes(new) + "\n", n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 2 if a snapshot is missing or stale")
    args = ap.parse_args(argv)
    bad = []
    for p in lessons():
        old, new, n = snapshotted(p)
        if old == new:
            continue
        if args.check:
            bad.append(f"{p.relative_to(ROOT)}: {n} widget output(s), snapshots missing or stale "
                       "(run python scripts/widget_snapshots.py, then scripts/build_ko.py)")  # fmt: skip
            continue
        write_text(p, new)  # temp file + rename
        print(f"{p.relative_to(ROOT)}: {n} snapshot(s)")
    for b in bad:
        print(b, file=sys.stderr)
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
