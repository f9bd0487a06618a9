"""Errors a user can act on.

Every error the zoo raises on purpose derives from `ZooError`; the CLI prints
its message as one line and exits non-zero, never a traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """`Type: first line of the message` (at most `limit` characters of it), so an error from deep
    inside a dependency stays one line in `zoo: error:`."""
    lines = str(exc).strip().splitlines()
    message = lines[0][:limit] if lines else ""
    return f"{type(exc).__name__}: {message}".rstrip(": ")


# What the user typed the overrides as: `--set` on the command line (zoo.cli.main says so), and
# `overrides=` in Python (zoo.cli.api, unless a command of the CLI calls it): errors name that one.
_OVERRIDES_SOURCE: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("overrides_source", default=None)


def set_source() -> str:
    """How error messages name the overrides: '--set', or 'overrides=' from Python."""
    return _OVERRIDES_SOURCE.get() or "--set"


@contextlib.contextmanager
def overrides_named(source: str) -> Iterator[None]:
    """Within it, errors name the overrides `source`, unless an outer caller (the CLI) named them first."""
    token = _OVERRIDES_SOURCE.set(source) if _OVERRIDES_SOURCE.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _OVERRIDES_SOURCE.reset(token)


class ZooError(Exception):
    """An error whose message tells the user what was wrong and where."""


class DuplicateComponentError(ZooError):
    """Two plugins registered the same (kind, name)."""


class UnknownComponentError(ZooError):
    """A recipe or command named a component, variant or kind that does not exist."""


class PluginLoadError(ZooError):
    """A plugin's entry point could not be imported or its hook failed."""


class PluginFaultError(ZooError):
    """A plugin's own code failed (an exception inside its factory that is not a refusal of what it
    was given): the fault of the plugin, named with its package, not of the user's recipe."""


class RecipeError(ZooError):
    """A recipe file or override is malformed; the message names file, recipe and key."""


class ModelBuildError(ZooError):
    """Components that cannot work together (shapes, missing condition, ...)."""


class TrainingDivergedError(ZooError):
    """The loss became NaN or infinite; the message names the step and last checkpoint."""


class RunDirectoryError(ZooError):
    """A run directory is missing, holds no model, or would be overwritten."""


class DataError(ZooError):
    """A dataset could not be found, read or split."""
