"""The checker behind every course exercise.

An exercise is a task ("write symmetric int8 quantization"), a set of test cases, and a reference
implementation from qlab. :func:`check` runs the learner's function on every case, compares it with
the reference and answers with a :class:`Result`: which case failed, by how much, and a hint.

Exercises live in the other modules of this package (one per lesson) and register themselves with
:func:`exercise`; :func:`get` imports them on first use, so adding a lesson's exercises never edits
this file.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import numpy as np

Case = tuple[tuple[Any, ...], dict[str, Any]]
"""One call of the learner's function: positional and keyword arguments."""


@dataclass(frozen=True)
class Exercise:
    """``reference(*args, **kwargs)`` is the answer; ``compare(got, expected)`` returns ``None``
    when they agree and otherwise a sentence saying how they differ."""

    name: str
    lesson: int
    prompt: str
    hint: str
    reference: Callable[..., Any]
    cases: Callable[[], Iterable[Case]]
    compare: Callable[[Any, Any], str | None] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.compare is None:
            object.__setattr__(self, "compare", allclose())


@dataclass(frozen=True)
class Result:
    """What :func:`check` found. ``bool(result)`` is True when every case passed."""

    exercise: str
    passed: bool
    cases_run: int
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"✓ {self.exercise}: correct on all {self.cases_run} test cases."
        return f"✗ {self.exercise}: {self.message}\n  Hint: {self.hint}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython display
        p.text(str(self))


def allclose(rtol: float = 0.0, atol: float = 0.0) -> Callable[[Any, Any], str | None]:
    """Compare arrays (or tuples of arrays) element-wise; ``rtol=atol=0`` asks for exact equality."""

    def compare(got: Any, expected: Any) -> str | None:
        if isinstance(expected, tuple):
            if not isinstance(got, tuple) or len(got) != len(expected):
                return f"expected a tuple of {len(expected)} values, got {type(got).__name__}"
            for i, (g, e) in enumerate(zip(got, expected, strict=True)):
                why = compare(g, e)
                if why:
                    return f"item {i} of the returned tuple: {why}"
            return None
        e = np.asarray(expected)
        try:
            g = np.asarray(got.detach().cpu().numpy() if hasattr(got, "detach") else got)
        except Exception as err:  # noqa: BLE001 - any conversion failure is the learner's answer
            return f"could not read the result as an array ({err})"
        if g.shape != e.shape:
            return f"shape {g.shape}, expected {e.shape}"
        g64, e64 = g.astype(np.float64), e.astype(np.float64)
        bad = ~np.isclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            return (f"{int(bad.sum())} of {bad.size} values differ; first at flat index {i}: "
                    f"got {g64.ravel()[i]!r}, expected {e64.ravel()[i]!r}")
        return None

    return compare


_REGISTRY: dict[str, Exercise] = {}
_LOADED = False


def exercise(ex: Exercise) -> Exercise:
    """Register ``ex`` (called by the lesson modules at import)."""
    if ex.name in _REGISTRY and _REGISTRY[ex.name] is not ex:
        raise ValueError(f"exercise {ex.name!r} is registered twice")
    _REGISTRY[ex.name] = ex
    return ex


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        pkg = import_module(__package__)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                import_module(f"{__package__}.{mod.name}")
        _LOADED = True


def names(lesson: int | None = None) -> list[str]:
    """Registered exercises, in lesson order (optionally of one lesson)."""
    _load_all()
    exs = sorted(_REGISTRY.values(), key=lambda e: (e.lesson, e.name))
    return [e.name for e in exs if lesson is None or e.lesson == lesson]


def get(name: str) -> Exercise:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown exercise {name!r}; known: {', '.join(names()) or 'none'}")
    return _REGISTRY[name]


def show(name: str) -> str:
    """The exercise's task, as a learner reads it."""
    ex = get(name)
    return f"Exercise {ex.name} (lesson {ex.lesson}): {ex.prompt}"


def solution(name: str) -> str:
    """The reference solution of exercise ``name``: the source of a ``my_...`` function."""
    from .solutions import SOLUTIONS

    get(name)  # an unknown name lists the known ones
    if name not in SOLUTIONS:
        raise ValueError(f"exercise {name!r} has no reference solution yet")
    return SOLUTIONS[name]


def check_solution(name: str) -> Result:
    """Run :func:`solution` through :func:`check`, as a learner's answer is run."""
    import math

    import torch

    src = solution(name)
    ns: dict[str, Any] = {"np": np, "torch": torch, "math": math}
    exec(compile(src, f"<solution {name}>", "exec"), ns)  # noqa: S102 - qlab's own source, not input
    fns = [v for k, v in ns.items() if k.startswith("my_") and callable(v)]
    if len(fns) != 1:
        raise ValueError(f"the solution of {name!r} must define exactly one my_... function, found {len(fns)}")
    return check(name, fns[0])


def check(name: str, fn: Callable[..., Any]) -> Result:
    """Run ``fn`` on every test case of exercise ``name`` and compare with qlab's reference."""
    ex = get(name)
    if not callable(fn):
        raise TypeError(f"check({name!r}, fn) expects a function, got {type(fn).__name__}")
    n = 0
    for n, (args, kwargs) in enumerate(ex.cases(), start=1):
        expected = ex.reference(*args, **kwargs)
        shown = ", ".join([*(_short(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        try:
            got = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - report the learner's error, do not crash the lesson
            return Result(name, False, n, f"case {n} ({shown}) raised {type(err).__name__}: {err}", ex.hint)
        if got is None and expected is not None:  # a stub (`...` body) or a missing `return`
            return Result(name, False, n, f"case {n} ({shown}): your function returned None -- complete its body "
                          "and `return` the answer", ex.hint)
        # an answer of a kind no reference has is the learner's mistake, reported with the hint:
        # complex values (whose imaginary part a float comparison would drop), or values that
        # cannot be compared at all (strings, objects)
        try:
            parts = got if isinstance(got, tuple) else (got,)
            kinds = [np.asarray(g.detach().cpu() if hasattr(g, "detach") else g).dtype for g in parts]
            cplx = next((k for k in kinds if k.kind == "c"), None)
            text = next((k for k in kinds if k.kind in "US"), None)
            if cplx is not None:
                why = f"the result has complex values (dtype {cplx}); the answer must be real numbers"
            else:  # the exercise's own message first; text it would accept (e.g. "1.5") is still wrong
                why = ex.compare(got, expected) or (
                    f"the result is text, not numbers (dtype {text}); return numbers" if text is not None else None
                )
        except Exception as err:  # noqa: BLE001 - an answer that cannot be compared is wrong
            why = f"the result cannot be compared with the reference ({type(err).__name__}: {err})"
        if why:
            return Result(name, False, n, f"case {n} ({shown}): {why}", ex.hint)
    if n == 0:
        raise ValueError(f"exercise {name!r} has no test cases")
    return Result(name, True, n, "all cases passed")


def _short(a: Any) -> str:
    if hasattr(a, "shape") and getattr(a, "ndim", 0) > 0:
        return f"array{tuple(a.shape)}"
    if isinstance(a, float | np.floating):  # 6 digits: the last bits of a computed case differ across CPUs
        return f"{float(a):.6g}"
    return repr(a)
