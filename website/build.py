"""Build the course as a static website: both editions, their committed outputs, no execution.

    python website/build.py [--out _site] [--notebooks notebooks] [--strict] [--check]

``--notebooks`` names a folder that holds the English lessons ``NN_*.ipynb`` and the Korean
edition in ``ko/`` (the repository's ``notebooks/`` by default). The site has a landing page
(``index.html``) and one Sphinx build per edition (``en/``, ``ko/``), each with its own table of
contents; website/conf.py configures both (MyST-NB, the widgets' static snapshots, the language
switch and the Binder link). ``--strict`` turns every Sphinx warning into a failure (missing
references included: sphinx-build runs nitpicky, ``-n``). ``--check`` then runs LinkChecker
(https://linkchecker.github.io/linkchecker/) over the built site from its landing page: every
internal link and anchor must resolve; http(s) links are not followed (the site is built offline).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EDITIONS = ("en", "ko")

_INDEX = {
    "en": (
        "# qlab: neural-network quantization, lesson by lesson\n\n"
        "{n} lessons, each shown as committed with its outputs. Widget panels are static snapshots "
        "of their first state: open a lesson on Binder (link at the top of every lesson) to move "
        "their controls; the bar at the top of every page switches to the Korean edition.\n"
    ),
    "ko": (
        "# qlab: 신경망 양자화 강의\n\n"
        "레슨 {n}개를 커밋된 출력과 함께 보여 줍니다. 위젯 패널은 첫 상태의 정적 스냅숏입니다. 컨트롤을 "
        "움직이려면 각 레슨 위쪽의 링크로 Binder에서 레슨을 여십시오. "
        "모든 페이지 위쪽의 막대에서 영어판으로 바꿀 수 있습니다.\n"
    ),
}
_LANDING = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qlab: the course</title>
<style>body {{ font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5; }}</style>
</head>
<body>
<h1>qlab</h1>
<p>A Jupyter workbench for learning neural-network quantization: {n} lessons.</p>
<ul>
<li><a href="en/index.html">English edition</a></li>
<li lang="ko"><a href="ko/index.html" hreflang="ko">한국어판</a> (신경망 양자화 강의)</li>
</ul>
</body>
</html>
"""
# LinkChecker drops root privileges to "nobody" before it checks anything, and nobody cannot read
# a build folder under a private directory (pytest's tmp_path, a root-owned checkout): run its
# command-line entry point in-process with that one step disabled.
_LINKCHECKER = (
    "import sys, linkcheck.command.linkchecker as m\n"
    "m.drop_privileges = lambda: None\n"
    "sys.argv[0] = 'linkchecker'\n"
    "sys.exit(m.linkchecker())\n"
)


def lessons(folder: Path) -> list[str]:
    """The lesson names (``NN_name``) of one edition's folder, sorted."""
    names = sorted(p.stem for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        raise FileNotFoundError(f"notebooks={folder}: no lesson NN_*.ipynb in it")
    return names


def stage(src: Path, dest: Path, edition: str, names: list[str]) -> None:
    """Copy one edition's lessons into a Sphinx source folder, with a generated index.md.

    The copies drop ``metadata.widgets`` (the saved widget state, up to 150 kB a lesson): it serves
    only a JavaScript widget manager, which the site does not load; each widget output's own
    text/html snapshot is kept, as every other output is.
    """
    dest.mkdir(parents=True)
    for name in names:
        nb = json.loads((src / f"{name}.ipynb").read_text(encoding="utf-8"))
        nb.get("metadata", {}).pop("widgets", None)
        (dest / f"{name}.ipynb").write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    toc = "\n".join(names)
    index = _INDEX[edition].format(n=len(names)) + f"\n```{{toctree}}\n:maxdepth: 1\n\n{toc}\n```\n"
    (dest / "index.md").write_text(index, encoding="utf-8")


def build(out: Path, notebooks: Path, strict: bool = False) -> bool:
    """Build both editions into ``out`` (two sphinx-build processes side by side); True if both succeed."""
    names = lessons(notebooks)
    ko_names = lessons(notebooks / "ko")
    if ko_names != names:
        raise ValueError(
            f"notebooks={notebooks}: the editions must hold the same lessons for the language switch; "
            f"only English: {sorted(set(names) - set(ko_names))}, only Korean: {sorted(set(ko_names) - set(names))}"
        )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qlab-site-") as tmp:
        ok = _sphinx(out, Path(tmp), notebooks, names, strict)
    (out / "index.html").write_text(_LANDING.format(n=len(names)), encoding="utf-8")
    (out / ".nojekyll").write_bytes(b"")  # GitHub Pages: serve the _static/ folders as they are
    return ok


def _sphinx(out: Path, work: Path, notebooks: Path, names: list[str], strict: bool) -> bool:
    """Stage both editions under ``work`` and run their sphinx-build processes side by side.

    Each edition builds into ``work/<edition>/html``, then moves to ``out/<edition>``: MyST-NB
    writes its output files to a ``jupyter_execute`` folder beside the build folder, which the
    two editions must not share and the site must not carry.
    """
    procs = {}
    for edition in EDITIONS:
        shutil.rmtree(out / edition, ignore_errors=True)  # no page of a lesson that is gone
        src = work / edition / "src"
        stage(notebooks if edition == "en" else notebooks / "ko", src, edition, names)
        # -E -a: a full build (the sources are staged anew each time); -n: warn on every missing
        # reference; -q: warnings only
        cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-a", "-n", "-q",
               *(["-W", "--keep-going"] if strict else []), "-c", str(HERE),
               "-D", f"language={edition}", "-d", str(work / edition / "doctrees"),
               str(src), str(work / edition / "html")]  # fmt: skip
        procs[edition] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ok = True
    for edition, proc in procs.items():
        log, _ = proc.communicate()
        if log.strip():
            print(f"--- sphinx-build ({edition}) ---\n{log.rstrip()}")
        ok &= proc.returncode == 0
        if proc.returncode:
            print(f"sphinx-build ({edition}) failed with exit status {proc.returncode}", file=sys.stderr)
        if (work / edition / "html").is_dir():
            shutil.move(work / edition / "html", out / edition)
    return ok


def check_links(out: Path) -> subprocess.CompletedProcess[str]:
    """Run LinkChecker over the site from its landing page; returncode 0 when every internal link resolves."""
    landing = out / "index.html"
    if not landing.is_file():
        raise FileNotFoundError(f"out={out}: no index.html, build the site first")
    cmd = [sys.executable, "-c", _LINKCHECKER, "--config", str(HERE / "linkcheckerrc"),
           "--no-status", "--ignore-url", r"^https?://", "--ignore-url", r"^mailto:",
           "--ignore-url", r"^data:",  # inline images, not links
           landing.resolve().as_uri()]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "_site", help="output folder (default: _site)")
    ap.add_argument("--notebooks", type=Path, default=REPO / "notebooks",
                    help="the lessons, with the Korean edition in ko/ (default: notebooks)")  # fmt: skip
    ap.add_argument("--strict", action="store_true", help="fail on any Sphinx warning")
    ap.add_argument("--check", action="store_true", help="then check every internal link (LinkChecker)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if not build(args.out, args.notebooks, strict=args.strict):
        return 1
    t1 = time.perf_counter()
    print(f"site: built {args.out}/index.html, en/ and ko/ in {t1 - t0:.1f} s")
    if args.check:
        res = check_links(args.out)
        print(res.stdout.rstrip())
        print(
            f"site: link check {'passed' if res.returncode == 0 else 'FAILED'} in {time.perf_counter() - t1:.1f} s"
        )
        if res.returncode:
            print(res.stderr.rstrip(), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
