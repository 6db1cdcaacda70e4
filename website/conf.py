"""Sphinx configuration of the course website (`make site`; website/build.py stages the sources).

One configuration serves both editions: website/build.py runs sphinx-build once per edition with
``-D language=en`` or ``-D language=ko`` over a staged copy of ``notebooks/`` or ``notebooks/ko/``
plus a generated ``index.md``. The lessons are rendered by MyST-NB (https://myst-nb.readthedocs.io)
with their committed outputs: nothing is executed.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes

# The one place that names the repository for Binder links: replace OWNER with the GitHub account
# that hosts qlab (README, "Or on mybinder.org", carries the same placeholder). {path} is the
# notebook's path inside the repository.
BINDER_URL = "https://mybinder.org/v2/gh/OWNER/qlab/HEAD?urlpath=lab/tree/{path}"

EDITIONS = {
    # language -> (folder of the notebooks in the repository, label of the link to this edition)
    "en": ("notebooks", "English"),
    "ko": ("notebooks/ko", "한국어"),
}
_BINDER_LABEL = {"en": "Open on Binder", "ko": "Binder에서 열기"}
_SWITCH_TITLE = {"en": "This lesson in Korean", "ko": "이 레슨의 영어판"}

project = "qlab"
author = "qlab"
copyright = "qlab authors"
language = "en"  # website/build.py overrides it per edition (-D language=...)

extensions = ["myst_nb"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["qlab.css"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "translations"]
root_doc = "index"

# --- MyST-NB: committed outputs only, the widgets' static snapshots, no CDN ---------------------
nb_execution_mode = "off"
# Every widget output carries a text/html snapshot of its panel (qlab/viz/snapshot.py) next to
# application/vnd.jupyter.widget-view+json; None drops the widget view, so text/html is shown.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
# MyST-NB would load require.js and the ipywidgets embed manager from a CDN on pages with widgets
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
myst_enable_extensions = ["dollarmath"]
# MathJax from the site itself, not a CDN: MathJax 3.2.2 as the sphinx-mathjax-offline package
# ships it; _copy_mathjax puts the part a page loads into _static/mathjax/ (the TeX-to-HTML bundle,
# its fonts, the TeX extensions it autoloads and its menu: 3 MB instead of the package's 24 MB)
mathjax_path = "mathjax/tex-chtml.js"
_MATHJAX_PARTS = ["tex-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y"]
myst_heading_anchors = 3

# --- HTML ---------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = "qlab"
# fixed_sidebar: alabaster's layout with the relbar_top block, where _templates/layout.html puts the
# edition bar; show_relbar_bottom: previous / next lesson under every page
html_theme_options = {"fixed_sidebar": True, "show_relbar_bottom": True, "sidebar_width": "240px",
                      "page_width": "1100px"}  # fmt: skip
html_show_sphinx = False
html_sidebars = {"**": ["navigation.html", "relations.html", "searchbox.html"]}
html_copy_source = False  # no _sources/*.ipynb.txt copies of the notebooks
html_show_sourcelink = False


def _page_context(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Give every page its language switch (same page, other edition) and, for a lesson, its Binder link."""
    lang = app.config.language
    if lang not in EDITIONS:
        raise ValueError(f"language={lang!r}: the site has the editions {sorted(EDITIONS)}")
    other = "ko" if lang == "en" else "en"
    up = "../" * (pagename.count("/") + 1)  # from this page to the site's root, above en/ and ko/
    context["qlab_switch_url"] = f"{up}{other}/{pagename}.html"
    context["qlab_switch_label"] = EDITIONS[other][1]
    context["qlab_switch_lang"] = other
    context["qlab_switch_title"] = _SWITCH_TITLE[lang]
    context["qlab_home_url"] = f"{up}index.html"
    context["qlab_binder_url"] = None
    if pagename in app.env.all_docs and str(app.env.doc2path(pagename)).endswith(".ipynb"):
        path = f"{EDITIONS[lang][0]}/{pagename}.ipynb"
        context["qlab_binder_url"] = BINDER_URL.format(path=path)
        context["qlab_binder_label"] = _BINDER_LABEL[lang]


def _copy_mathjax(app: Any, exc: Exception | None) -> None:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("sphinx-mathjax-offline is not installed (requirements.lock has it)")
    src = Path(spec.submodule_search_locations[0]) / "static" / "mathjax"
    dest = Path(app.outdir) / "_static" / "mathjax"
    for part in _MATHJAX_PARTS:
        if (src / part).is_dir():
            shutil.copytree(src / part, dest / part, dirs_exist_ok=True)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, dest / part)


_NOTEBOOK_LINK = re.compile(r"^(?P<doc>[0-9][0-9]_[A-Za-z0-9_]+)\.ipynb(?P<anchor>#.*)?$")


def _notebook_links(app: Any, doctree: Any, docname: str) -> None:
    """Point a link to a sibling lesson (``02_linear_quantization.ipynb``) at its page.

    MyST resolves such links in markdown cells, but not in a cell's ``text/markdown`` output
    (lesson 14's glossary table is one): there the link would stay ``NN_name.ipynb``, a file the
    site does not have.
    """
    for ref in doctree.findall(nodes.reference):
        m = _NOTEBOOK_LINK.match(ref.get("refuri", ""))
        if m and m["doc"] in app.env.all_docs:
            ref["refuri"] = app.builder.get_relative_uri(docname, m["doc"]) + (m["anchor"] or "")


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _page_context)
    app.connect("doctree-resolved", _notebook_links)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
