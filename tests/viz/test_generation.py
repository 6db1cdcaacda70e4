"""The same-prompt panel's HTML and text renderers (pure functions behind the widget)."""

from __future__ import annotations

import re

from qlab.analysis.generation import Continuation, SamePrompt
from qlab.viz.generation import continuation_html, continuation_table, generation_panel, row_html


def _result() -> SamePrompt:
    f32 = Continuation("f32", 32.0, [1, 2, 3], [" Paris", ".", "\n"], None, [0.0, 0.0, 0.0], [2.0, 1.0, 0.5])
    q = Continuation("q4_0", 4.5, [1, 9, 9], [" Paris", "<|im_end|>", "!"], 1, [0.01, 0.9, 3.0])
    return SamePrompt("The capital of France is", 5, 3, [f32, q])


def test_row_html_marks_the_first_divergence_and_shows_kl():
    h = row_html(_result().rows[1])
    spans = re.findall(r"<span style=\"([^\"]*)\"", h)
    assert len(spans) == 3
    assert "outline" not in spans[0] and "outline" in spans[1] and "outline" not in spans[2]
    assert "color:#777" in spans[2]  # after the divergence: greyed
    assert "&lt;|im_end|&gt;" in h and "<|im_end|>" not in h  # special tokens escaped
    assert ">0.01<" in h and ">0.90<" in h and ">3.00<" in h
    assert "rgba(220,50,47,0.550)" in h  # KL >= 2 nats: full colour


def test_float_row_and_newlines():
    h = row_html(_result().rows[0])
    assert "outline" not in h and "⏎" in h and "\n" not in h


def test_continuation_html_and_table():
    r = _result()
    h = continuation_html(r)
    assert h.count("<tr>") == 2 and "diverges: token 1" in h and "diverges: -" in h and "5 tokens" in h
    t = continuation_table(r).splitlines()
    assert t[0].split()[:3] == ["model", "bits/w", "diverges"]
    assert t[2].split()[:3] == ["f32", "32.00", "-"] and t[3].split()[:4] == ["q4_0", "4.50", "1", "1.303"]


def test_panel_switches_between_cached_prompts():
    a = _result()
    b = SamePrompt("대한민국의 수도는", 22, 3, a.rows)
    panel = generation_panel({a.prompt: a, b.prompt: b})
    pick, out = panel.children[0].children[0], panel.children[2]
    assert "France" in out.value
    pick.value = b.prompt
    assert "대한민국" in out.value and "France" not in out.value
    go = panel.children[1].children[1]
    assert go.disabled  # no model loader: live generation off


def test_format_picker_filters_the_rows_shown():
    """Deselecting a format drops its row at once (the float row stays); reselecting restores it."""
    from qlab.viz.generation import shown_rows

    a = _result()
    panel = generation_panel({a.prompt: a})
    chosen, out = panel.children[0].children[1], panel.children[2]
    assert out.value == continuation_html(a) and "<b>q4_0</b>" in out.value
    chosen.value = tuple(r for r in chosen.options if r != "q4_0")
    assert "<b>q4_0</b>" not in out.value and "<b>f32</b>" in out.value
    assert out.value == continuation_html(shown_rows(a, chosen.value, chosen.options))
    chosen.value = tuple(chosen.options)
    assert out.value == continuation_html(a)
    other = SamePrompt(a.prompt, 5, 3, [a.rows[0], Continuation("hqq", 4.2, [1], [" x"], 0, [0.5])])
    assert [r.label for r in shown_rows(other, (), ("q4_0",)).rows] == ["f32", "hqq"]  # not pickable: kept
