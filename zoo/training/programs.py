"""Jitted programs kept for the next run of the same structure.

JAX keeps a jitted function's traced and compiled programs on the function object, so a step
built anew for every run is traced and lowered anew, even when the run's model and recipe are
the last run's: a suite's seeds, a run trained and then evaluated, a notebook that trains twice.
Tracing and lowering were 58% of the test workers' time (py-spy). A program built here under a
key naming everything it closes over (`kept_program`) is built once per process instead.
"""

from __future__ import annotations

import collections
from typing import Callable, Hashable, Optional

KEPT_PROGRAMS = 64  # each holds its compiled executables; the oldest unused goes first
_kept: collections.OrderedDict[Hashable, Callable] = collections.OrderedDict()


def kept_program(key: Optional[Hashable], build: Callable[[], Callable]) -> Callable:
    """The program `build()` makes, kept under `key` and returned again for an equal key. A key
    of None, or one with an unhashable part (a plugin's condition, say), builds every time."""
    if key is None:
        return build()
    try:
        program = _kept.get(key)
    except TypeError:  # unhashable: nothing to find it by next time
        return build()
    if program is None:
        program = _kept[key] = build()
        while len(_kept) > KEPT_PROGRAMS:
            _kept.popitem(last=False)
    else:
        _kept.move_to_end(key)
    return program
