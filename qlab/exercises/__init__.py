"""Course exercises with automatic checkers.

>>> import qlab.exercises as ex
>>> print(ex.show("symmetric_int8"))                      # doctest: +SKIP
>>> ex.check("symmetric_int8", my_quantize)               # ✓ or ✗ with the failing case and a hint
>>> print(ex.solution("symmetric_int8"))                  # doctest: +SKIP  (the reference solution)

Each lesson's exercises live in a module of this package and register themselves on import; the
lessons give a stub to complete, and the reference solutions (:mod:`.solutions`) are checked by
:func:`check_solution` in a hidden cell after each stub.
"""

from ._core import Exercise, Result, allclose, check, check_solution, exercise, get, names, show, solution

__all__ = ["Exercise", "Result", "allclose", "check", "check_solution", "exercise", "get", "names", "show", "solution"]
