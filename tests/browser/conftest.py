"""Print the browser suite's per-lesson times and its artifact directory (screenshots) at the end of
the run, also when pytest captures the tests' output (``make test``)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's hook signature
    from . import _lab

    if _lab.SUMMARY:
        terminalreporter.section("browser lessons")
        for line in _lab.SUMMARY:
            terminalreporter.write_line(line)
