"""qlab.core.report.format_table: alignment by display columns (Korean text takes two per syllable)."""

from __future__ import annotations

import unicodedata

from qlab.core.report import display_width, format_table


def test_display_width_follows_east_asian_width():
    assert display_width("abc") == 3
    assert display_width("대한민국") == 8  # Hangul syllables are wide (W)
    assert display_width("ｑ") == 2  # full-width Latin (F)
    assert display_width("e\u0301") == 1  # a combining accent takes no column
    assert all(unicodedata.east_asian_width(c) == "W" for c in "양자화")


def test_korean_rows_line_up():
    rows = [{"p": "대한민국의 수도는", "n": 22}, {"p": "The capital of France is", "n": 5}]
    lines = format_table(rows, [("p", "prompt", None), ("n", "tokens", "d")]).splitlines()
    assert len({display_width(line) for line in lines}) == 1  # every line ends in the same column
    assert lines[2].endswith("22") and lines[3].endswith(" 5")
