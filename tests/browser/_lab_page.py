"""What the JupyterLab browser test does inside the page, through the app that
``LabApp.expose_app_in_browser`` puts at ``window.jupyterapp`` (JupyterLab 4's command registry
and notebook model: the same commands as the *Run > Run All Cells* menu), and with Playwright's
keyboard and mouse for the widgets (as a reader moves them).

A *panel* is a lesson's interactive widget: an ipywidgets ``VBox`` displayed as a cell's output
holding at least one control. Its *main control* is the first slider, dropdown, toggle-buttons,
checkbox or text box in it (DOM order). Whether the panel reacted is judged on the panel as a
whole -- its HTML and every image source, the controls themselves left out -- so a plot drawn
as an ``<img>`` in an ``Output`` widget or as an ``ipywidgets.Image`` updated in place count alike.
"""

from __future__ import annotations

import time
from typing import Any

CONTROLS = ".widget-slider, .widget-dropdown, .widget-toggle-buttons, .widget-checkbox, .widget-text"
INPUTS = CONTROLS + ", .widget-button, .widget-select-multiple, .widget-select, .widget-label"

# open ``path``; with ``timeoutMs`` > 0, clear its outputs and Run All Cells (resolves when the
# last cell has replied: true when none failed)
OPEN = """async ([path, timeoutMs]) => {
  const app = window.jupyterapp;
  const w = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  window.__qlab = w;
  await w.context.ready;
  await w.sessionContext.ready;
  app.shell.activateById(w.id);
  if (timeoutMs <= 0) return null;
  await app.commands.execute('notebook:clear-all-cell-outputs');
  const run = app.commands.execute('notebook:run-all-cells');
  const late = new Promise((_, no) => setTimeout(() => no(new Error(`run-all not done in ${timeoutMs / 1000} s`)), timeoutMs));
  return await Promise.race([run, late]);
}"""

# every code cell's state from the notebook model: errors fail the test, stderr is reported
OUTCOME = """() => {
  const w = window.__qlab, res = {cells: 0, unexecuted: [], errors: [], stderr: [], widget_errors: []};
  w.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    res.cells++;
    if (cell.model.sharedModel.getSource().trim() && cell.model.executionCount === null) res.unexecuted.push(i);
    for (const o of cell.model.outputs.toJSON()) {
      if (o.output_type === 'error') res.errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
      const text = Array.isArray(o.text) ? o.text.join('') : (o.text || '');
      if (o.output_type === 'stream' && o.name === 'stderr') res.stderr.push(`cell ${i}: ${text.trim().split('\\n')[0].slice(0, 160)}`);
    }
  });
  for (const e of w.content.node.querySelectorAll('.jp-OutputArea-output'))
    if (/Error displaying widget|Model not found|Traceback \\(most recent call last\\)/i.test(e.textContent))
      res.widget_errors.push(e.textContent.trim().slice(0, 300));
  return res;
}"""

# mark the panels (data-qlab-panel=i) and name each one's main control
PANELS = """(controls) => {
  const out = [];
  for (const root of window.__qlab.content.node.querySelectorAll('.jp-OutputArea-output > .jupyter-widgets.widget-vbox')) {
    if (root.parentElement.closest('.jupyter-widgets')) continue;  // inside another widget
    const c = root.querySelector(controls);
    if (!c) continue;
    root.dataset.qlabPanel = out.length;
    const kind = ['slider', 'dropdown', 'toggle-buttons', 'checkbox', 'text'].find(k => c.classList.contains('widget-' + k));
    out.push({kind, label: (c.querySelector('.widget-label') || {}).textContent || ''});
  }
  return out;
}"""

# the panel's content without its controls, and whether its images have loaded
STATE = """([i, inputs]) => {
  const root = document.querySelector(`[data-qlab-panel="${i}"]`);
  if (!root) return null;
  const clone = root.cloneNode(true);
  clone.querySelectorAll(inputs).forEach(e => e.remove());
  const imgs = [...root.querySelectorAll('img')];
  return {html: clone.innerHTML, text: clone.textContent.replace(/\\s+/g, ' ').trim().slice(0, 100),
          ready: imgs.every(im => im.complete && im.naturalWidth > 0), images: imgs.length};
}"""

CLOSE = """async () => {
  const w = window.__qlab;
  if (!w) return;
  window.__qlab = null;
  try { await w.sessionContext.shutdown(); } finally { w.context.model.dirty = false; w.dispose(); }
}"""

# the first rendered markdown text with Hangul in it, marked for CDP's font query
MARK_HANGUL = """() => {
  for (const e of window.__qlab.content.node.querySelectorAll('.jp-RenderedMarkdown h1, .jp-RenderedMarkdown p')) {
    if (/[\\uac00-\\ud7a3]/.test(e.textContent)) { e.dataset.qlabHangul = '1'; e.scrollIntoView(); return e.textContent.slice(0, 60); }
  }
  return null;
}"""


def panel_state(page: Any, i: int) -> dict[str, Any]:
    return page.evaluate(STATE, [i, INPUTS])


def move(page: Any, i: int, kind: str) -> str:
    """Move panel ``i``'s main control one notch as a reader would; returns what was done."""
    c = page.locator(f'[data-qlab-panel="{i}"]').locator(CONTROLS).first
    c.scroll_into_view_if_needed()
    if kind == "slider":
        h = c.locator(".noUi-handle").first
        now, top = float(h.get_attribute("aria-valuenow")), float(h.get_attribute("aria-valuemax"))
        key = "ArrowRight" if now < top else "ArrowLeft"
        h.focus()
        page.keyboard.press(key)
        return f"slider {now:g} -> {h.get_attribute('aria-valuenow')} ({key})"
    if kind == "dropdown":
        sel = c.locator("select")
        opts = sel.locator("option").all_text_contents()
        k = sel.evaluate("s => s.selectedIndex")
        sel.select_option(index=(k + 1) % len(opts))
        return f"dropdown {opts[k]!r} -> {opts[(k + 1) % len(opts)]!r}"
    if kind == "toggle-buttons":
        b = c.locator("button:not(.mod-active)").first
        label = b.inner_text()
        b.click()
        return f"toggle -> {label!r}"
    if kind == "checkbox":
        c.locator("input").click()
        return "checkbox toggled"
    c.locator("input").fill("quant")
    return "text 'quant' typed"


def wait_changed(page: Any, i: int, before: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Poll panel ``i`` until it differs from ``before`` and then holds still for a second with
    its images loaded (an Output widget clears before it redraws); raise if it never changes."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        s = panel_state(page, i)
        if s is None or s != last:
            last, since = s, time.monotonic()
        elif s["ready"] and s["html"] != before["html"] and time.monotonic() - since >= 1.0:
            return s
        page.wait_for_timeout(200)  # polling interval, not synchronisation
    raise AssertionError(f"panel {i} did not change within {timeout_s:.0f} s (still {before['text']!r})")


def fonts_for(page: Any, selector: str) -> dict[str, int]:
    """The platform fonts Chromium used for the text of ``selector`` (DevTools' CSS domain,
    as the *Computed > Rendered fonts* pane shows): family -> glyph count."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        doc = cdp.send("DOM.getDocument", {"depth": -1})
        node = cdp.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
        return {f["familyName"]: f["glyphCount"] for f in fonts}
    finally:
        cdp.detach()
