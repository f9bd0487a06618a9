"""The zoo's version, with the git commit when it runs from a checkout (recorded by every run)."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path
from typing import Optional

CHECKOUT = Path(__file__).resolve().parent.parent


def package_version() -> str:
    try:
        return importlib.metadata.version("vae-zoo")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The checkout's commit (with "-dirty" when tracked files changed), or None away from a checkout."""
    if not (CHECKOUT / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(CHECKOUT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        )
        changed = subprocess.run(
            ["git", "-C", str(CHECKOUT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if changed.returncode == 0 and changed.stdout.strip() else "")


def describe() -> str:
    """'zoo 0.1.0 (git 1a2b3c4d5e6f)' or 'zoo 0.1.0' for an installed wheel."""
    commit = git_commit()
    return f"zoo {package_version()}" + (f" (git {commit})" if commit else "")
