"""A workaround for the empty directories TFDS leaves in the temporary folder."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def no_stray_tfds_dirs() -> Iterator[None]:
    """Remove the empty `tmp*tfds` directories that TFDS makes inside this block.

    TFDS 4.9 makes a builder for a dataset not yet prepared by calling
    DatasetInfo.initialize_from_bucket. That function creates `tempfile.mkdtemp("tfds")`
    before it finds GCS disabled, and then never removes it. Each preparation leaves a
    few of them, and a test session leaves thousands. Only empty ones are removed
    (`os.rmdir`), so a directory that some process is still filling stays.
    """
    pattern = os.path.join(tempfile.gettempdir(), "tmp*tfds")
    before = set(glob.glob(pattern))
    try:
        yield
    finally:
        for path in set(glob.glob(pattern)) - before:
            with contextlib.suppress(OSError):
                os.rmdir(path)
