"""How fast does every lesson's widget panel answer? p50/p95 milliseconds from input to updated output.

Each lesson runs in a real Jupyter kernel (nbclient), top to bottom up to its widget panels; after
each panel a timing cell moves every control of the panel (sliders one step up and down, each
option of a dropdown or toggle, checkboxes both ways, a search text) and times the assignment
``control.value = new``: ipywidgets runs the panel's observers synchronously in the kernel. The
"picture" time runs until the panel's ``Image`` widget has its new PNG (state function, in-place
update, Agg render, PNG encode, comm message sent) -- everything but the browser painting it; a
move that changes no picture counts until its callback returned. "settled" is until the callback
returned, for panels that compute a slower number after their picture (lesson 07's model
accuracy). The goal (issue 16) is a picture p95 < 150 ms.

    python benchmarks/widgets.py                 # every lesson with a panel
    python benchmarks/widgets.py --lessons 00,10 # some of them
    python benchmarks/widgets.py --json out.json

Timings vary with the machine and its load: compare lessons measured in the same run.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 150.0

TIMER = r'''
import json as _json, time as _time
import ipywidgets as _W

def _qlab_controls(w):
    if isinstance(w, _W.Box):
        return [c for k in w.children for c in _qlab_controls(k)]
    keep = (_W.IntSlider, _W.FloatSlider, _W.FloatLogSlider, _W.Dropdown, _W.ToggleButtons, _W.RadioButtons,
            _W.Checkbox, _W.ToggleButton, _W.Text)
    return [w] if isinstance(w, keep) and not getattr(w, "disabled", False) else []

def _qlab_moves(c, n=4):
    if isinstance(c, (_W.Checkbox, _W.ToggleButton)):
        return [not c.value, c.value]
    if isinstance(c, _W.Text):
        return ["int", "quant", ""]
    if isinstance(c, (_W.Dropdown, _W.ToggleButtons, _W.RadioButtons)):
        vals = [v for _, v in c._options_full] if hasattr(c, "_options_full") else list(c.options)
        others = [v for v in vals if v != c.value][: n - 1]
        return others + [c.value]
    if isinstance(c, _W.FloatLogSlider):
        lo, hi = c.base ** c.min, c.base ** c.max
        up = min(c.value * c.base ** c.step, hi)
        return [up, c.value] * (n // 2) if up != c.value else [max(c.value / c.base ** c.step, lo), c.value]
    up = c.value + c.step if c.value + c.step <= c.max else c.value - c.step
    return [up, c.value] * (n // 2)

def _qlab_images(w):
    if isinstance(w, _W.Box):
        return [i for k in w.children for i in _qlab_images(k)]
    return [w] if isinstance(w, _W.Image) else []

def _qlab_time(panel):
    # picture: until the panel's Image got its new PNG (ipywidgets sends the comm message, then
    # runs observers: this stamp comes after the send); a move that changes no picture (text
    # panels, a setting already shown) counts until its callback returned. settled: until the callback
    # returned (a panel may compute a slower number after its picture, e.g. lesson 07's model accuracy).
    picture, settled, stamps = [], [], []
    for im in _qlab_images(panel):
        im.observe(lambda ch: stamps.append(_time.perf_counter()), "value")
    for c in _qlab_controls(panel):
        for v in _qlab_moves(c):
            stamps.clear()
            t = _time.perf_counter()
            c.value = v
            end = _time.perf_counter()
            settled.append((end - t) * 1e3)
            picture.append(((stamps[0] if stamps else end) - t) * 1e3)
    print("QLAB_TIMES " + _json.dumps({"picture": picture, "settled": settled}))
'''


def lessons(selected: list[str] | None) -> list[Path]:
    out = []
    for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if selected and p.name[:2] not in selected:
            continue
        out.append(p)
    return out


def _is_panel(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {}) and "VBox" in str(o["data"].get("text/plain", ""))
        for o in cell.get("outputs", [])
    )


def _keep_panel(source: str) -> str:
    """The panel cell with its last expression (the panel) bound to ``_qlab_panel`` and displayed."""
    tree = ast.parse(source)
    last = tree.body[-1]
    if not isinstance(last, ast.Expr):
        raise ValueError(f"a panel cell must end with the panel expression:\n{source}")
    head = ast.unparse(ast.Module(body=tree.body[:-1], type_ignores=[]))
    return f"{head}\n_qlab_panel = {ast.unparse(last.value)}\ndisplay(_qlab_panel)"


def measure(path: Path, timeout: int = 900) -> dict[str, list[float]] | None:
    """Milliseconds per control move of every panel of one lesson, to the new picture and until the
    callback returned (``{"picture": [...], "settled": [...]}``; None: no panel)."""
    nb = nbformat.read(path, as_version=4)
    last = max((i for i, c in enumerate(nb.cells) if _is_panel(c)), default=None)
    if last is None:
        return None
    cells = [nbformat.v4.new_code_cell(TIMER)]
    for c in nb.cells[: last + 1]:
        if c.cell_type != "code":
            continue
        if _is_panel(c):
            cells.append(nbformat.v4.new_code_cell(_keep_panel(c.source)))
            cells.append(nbformat.v4.new_code_cell("_qlab_time(_qlab_panel)"))
        else:
            cells.append(nbformat.v4.new_code_cell(c.source))
    run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    NotebookClient(run, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    times: dict[str, list[float]] = {"picture": [], "settled": []}
    for c in run.cells:
        for o in c.get("outputs", []):
            for line in str(o.get("text", "")).splitlines():
                if line.startswith("QLAB_TIMES "):
                    for k, v in json.loads(line[len("QLAB_TIMES ") :]).items():
                        times[k] += v
    return times


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lessons", help="comma-separated lesson numbers, e.g. 00,10")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'lesson':34s} {'moves':>5s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'settled p95':>11s} "
          f"{'max':>7s}  goal: picture p95 < {GOAL_MS:.0f} ms")  # fmt: skip
    for p in lessons(args.lessons.split(",") if args.lessons else None):
        t0 = time.perf_counter()
        times = measure(p)
        if times is None:
            continue
        pic, done = times["picture"], times["settled"]
        if not pic:
            print(f"{p.stem:34s} no movable control", flush=True)
            continue
        row = {"lesson": p.stem, "moves": len(pic), "p50_ms": statistics.median(pic), "p95_ms": pct(pic, 0.95),
               "max_ms": max(pic), "settled_p95_ms": pct(done, 0.95), "settled_max_ms": max(done),
               "run_s": time.perf_counter() - t0}  # fmt: skip
        rows.append(row)
        ok = "ok" if row["p95_ms"] < GOAL_MS else "SLOW"
        print(f"{p.stem:34s} {row['moves']:5d} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f} {row['max_ms']:8.1f} "
              f"{row['settled_p95_ms']:11.1f} {row['settled_max_ms']:7.0f}  {ok}", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
