"""Build the Korean edition (notebooks/ko/) from the English lessons and their translations.

One source of truth for code: ``notebooks/<stem>.ipynb``. Each Korean notebook is that notebook
with every markdown cell replaced by its translation from ``notebooks/ko/translations/<stem>.json``:

    {"<cell id>": {"en_sha1": "<sha1 of the English markdown, 12 hex>", "ko": "<Korean markdown>"}}

Code cells (source, outputs, metadata) and the notebook's metadata (widget state included) are
copied unchanged, so the Korean lessons show exactly what nbval checks in the English ones. The
build refuses (exit 2, every problem listed) when a markdown cell has no translation, an empty one,
one without Hangul, or one made for an older English text (``en_sha1`` differs: the English cell
changed since it was translated), and when a translation names a cell the notebook does not have.

    python scripts/build_ko.py            # write notebooks/ko/*.ipynb (atomically)
    python scripts/build_ko.py --check    # fail if a Korean notebook is missing or differs from the build
    python scripts/build_ko.py --skeleton 05_block_formats   # print a translation file to fill in
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

from qlab.files import write_text

ROOT = Path(__file__).resolve().parents[1]
EN = ROOT / "notebooks"
KO = EN / "ko"
TRANSLATIONS = KO / "translations"
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def source(cell: dict) -> str:
    s = cell["source"]
    return s if isinstance(s, str) else "".join(s)


def en_sha1(text: str) -> str:
    """The key that ties a translation to the English text it was made from."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def lessons() -> list[Path]:
    return sorted(EN.glob("[0-9][0-9]_*.ipynb"))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def dumps(nb: dict) -> str:
    """nbformat's own on-disk layout (indent 1, sorted keys, non-ASCII kept), so that opening and
    saving a Korean lesson in Jupyter does not by itself make it differ from its build."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def problems(stem: str, nb: dict, tr: dict) -> list[str]:
    out = []
    ids = set()
    for c in nb["cells"]:
        if c["cell_type"] != "markdown":
            continue
        cid = c["id"]
        ids.add(cid)
        t = tr.get(cid)
        if t is None:
            out.append(f"{stem}: markdown cell {cid} has no translation")
        elif not isinstance(t, dict) or not isinstance(t.get("ko"), str) or not t["ko"].strip():
            out.append(f"{stem}: cell {cid}: the translation must be {{'en_sha1': ..., 'ko': '<non-empty text>'}}")
        elif not HANGUL.search(t["ko"]):
            out.append(f"{stem}: cell {cid}: the translation has no Korean text")
        elif t.get("en_sha1") != en_sha1(source(c)):
            out.append(f"{stem}: cell {cid}: the English text changed since it was translated "
                       f"(en_sha1 {t.get('en_sha1')!r}, now {en_sha1(source(c))!r}): update the translation")
    out += [f"{stem}: translation of cell {k}, which is not a markdown cell of the notebook" for k in tr if k not in ids]
    return out


def build(stem: str) -> tuple[dict | None, list[str]]:
    """The Korean notebook of ``stem`` and the problems that prevent it (then ``None``)."""
    nb = load(EN / f"{stem}.ipynb")
    tpath = TRANSLATIONS / f"{stem}.json"
    if not tpath.exists():
        return None, [f"{stem}: no translation file {tpath.relative_to(ROOT)}"]
    tr = load(tpath)
    errs = problems(stem, nb, tr)
    if errs:
        return None, errs
    ko = copy.deepcopy(nb)
    for c in ko["cells"]:
        if c["cell_type"] == "markdown":
            c["source"] = tr[c["id"]]["ko"].splitlines(keepends=True)  # nbformat's list of lines
    ko["metadata"]["language"] = "ko"
    return ko, []


def skeleton(stem: str) -> dict:
    nb = load(EN / f"{stem}.ipynb")
    return {c["id"]: {"en_sha1": en_sha1(source(c)), "ko": ""} for c in nb["cells"] if c["cell_type"] == "markdown"}


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)  # temp file + rename (qlab.files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed notebooks/ko, write nothing")
    ap.add_argument("--skeleton", metavar="STEM", help="print an empty translation file for one lesson")
    args = ap.parse_args(argv)
    if args.skeleton:
        print(json.dumps(skeleton(args.skeleton), indent=1, ensure_ascii=False))
        return 0
    errs: list[str] = []
    for p in lessons():
        ko, e = build(p.stem)
        errs += e
        if ko is None:
            continue
        target = KO / p.name
        if args.check:
            if not target.exists():
                errs.append(f"{p.stem}: {target.relative_to(ROOT)} is missing (run python scripts/build_ko.py)")
            elif target.read_text(encoding="utf-8") != dumps(ko):
                errs.append(f"{p.stem}: {target.relative_to(ROOT)} differs from its build (run python scripts/build_ko.py)")
        else:
            write_atomic(target, dumps(ko))
    extra = sorted({p.name for p in KO.glob("*.ipynb")} - {p.name for p in lessons()})
    errs += [f"notebooks/ko/{n}: no English lesson of that name" for n in extra]
    for e in errs:
        print(e, file=sys.stderr)
    return 2 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
