"""Course exercises with automatic checkers.

>>> import qlab.exercises as ex
>>> print(ex.show("symmetric_int8"))                      # doctest: +SKIP
>>> ex.check("symmetric_int8", my_quantize)               # ✓ or ✗ with the failing case and a hint

Each lesson's exercises live in a module of this package and register themselves on import.
"""

from ._core import Exercise, Result, allclose, check, exercise, get, names, show

__all__ = ["Exercise", "Result", "allclose", "check", "exercise", "get", "names", "show"]
