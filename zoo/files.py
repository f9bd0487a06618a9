"""Files a run keeps, read and written so that a kill at any moment loses nothing already written.

Light on purpose (no JAX): `zoo compare` reads results through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator

from zoo.errors import RunDirectoryError, ZooError


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file.

    A last line without its newline that does not parse is a write a kill
    interrupted: it is left out (resume drops it from the file). A bad line
    anywhere else is damage, named with its line number.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: torn by a kill mid-write
                break
            raise RunDirectoryError(f"{path}:{number}: not a JSON line ({exc.msg}); the file is damaged") from None
        if not isinstance(record, dict):
            raise RunDirectoryError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` all at once: the old content or the new, never half of either."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


@contextlib.contextmanager
def held_exclusively(lock_path: Path, wait: bool = True) -> Iterator[bool]:
    """One process at a time in the block: the kernel's lock (flock) on `lock_path`, created if need be.

    Yields True once held; with `wait=False` it yields False at once, not holding it, when
    another process does. For a file that several processes rebuild from what they read
    (results.jsonl of two `zoo bench` processes sharing one --out), and for claiming a
    piece of work (a bench run). A holder that dies releases the lock with its file
    descriptors."""
    with open(lock_path, "a") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


@contextlib.contextmanager
def naming_write_errors(what: str) -> Iterator[None]:
    """A failed write (a full disk, a lost mount) as one line naming what was being written."""
    try:
        yield
    except OSError as exc:
        raise RunDirectoryError(
            f"cannot write {what}: {exc.strerror or exc}; what was written before is intact, "
            "free the space and continue with --resume"
        ) from None


def writable_directory(path: Path, what: str = "the figures") -> Path:
    """`path`, created if need be and checked writable; one ZooError naming it otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".zoo-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise ZooError(f"{path}: cannot write {what} there (it, or a folder above it, is a file)") from None
    except OSError as exc:
        raise ZooError(f"{path}: cannot write {what} there ({exc.strerror or exc})") from None
    return path
