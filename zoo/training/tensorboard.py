"""TensorBoard event files beside metrics.jsonl (WORKDIR/tensorboard/), written with tensorboardX.

    tensorboard --logdir runs        # TensorBoard itself: pip install tensorboard

Every logged training record and validation becomes scalars (`train/loss`,
`validation/elbo`, ...), and each checkpoint a grid of samples (`samples`). A
resume purges the events after the step it restarts from, as metrics.jsonl
drops its records, so the curves hold each step once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

TENSORBOARD_DIR = "tensorboard"
SAMPLE_ROWS = 8


def import_tensorboardx():
    """The tensorboardX package, imported without PyTorch.

    tensorboardX's package imports PyTorch whenever it is installed (the perf extra installs it),
    only to accept torch tensors; that import took 4.7 of the 12.6 s `zoo train` took to start
    here. The zoo gives it floats and numpy arrays, so torch is hidden for the length of the
    import (a `None` in sys.modules makes `import torch` fail as if it were absent) and then
    restored: a notebook that imports torch later gets it as usual. Where torch is already
    imported, nothing is hidden.
    """
    import sys

    if "torch" not in sys.modules:
        sys.modules["torch"] = None
        try:
            import tensorboardX
        finally:
            if "torch" in sys.modules and sys.modules["torch"] is None:
                del sys.modules["torch"]
    import tensorboardX

    return tensorboardX


class TensorBoardLog:
    """Scalars and sample grids of one run; does nothing when disabled."""

    def __init__(self, workdir: Path, purge_from: int, enabled: bool = True):
        """`purge_from`: the first step this session logs; TensorBoard drops earlier files' events from there on."""
        self.writer = None
        if enabled:
            SummaryWriter = import_tensorboardx().SummaryWriter
            # tensorboardX names a file by the second it opens it; a resume within the same second
            # (a small run, compiled programs read from a cache) would overwrite the first file and
            # lose its history. The nanosecond suffix keeps every session's file, in the order
            # TensorBoard (and read_events) reads them: by name.
            self.writer = SummaryWriter(
                logdir=str(Path(workdir) / TENSORBOARD_DIR),
                purge_step=purge_from,
                flush_secs=30,
                filename_suffix=f".{time.time_ns()}",
            )

    def scalars(self, split: str, values: Mapping[str, Any], step: int) -> None:
        """One scalar per numeric value, tagged `split/name`."""
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in ("step", "epoch"):
                self.writer.add_scalar(f"{split}/{name}", value, step)

    def samples(self, experiment, graphdef, params, seed: int, step: int) -> None:
        """A grid of samples of the model at `step` (one row per class for a class-conditional model)."""
        if self.writer is None:
            return
        import jax

        from zoo.images import tile
        from zoo.core.sampling import sample_images

        images, _, rows = sample_images(experiment, graphdef, params, jax.random.key(seed), per_row=SAMPLE_ROWS)
        grid = np.clip(tile(np.asarray(images, np.float32), rows), 0.0, 1.0)
        self.writer.add_image("samples", grid, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_events(workdir: Path) -> list[tuple[int, str, Optional[float]]]:
    """(step, tag, scalar value or None for an image) of every event a run wrote, in order.

    Reads the TFRecord framing directly (length, CRC, Event proto, CRC), so
    checking a run's events needs neither TensorFlow nor TensorBoard.
    """
    import struct

    import_tensorboardx()
    from tensorboardX.proto import event_pb2

    found: list[tuple[int, str, Optional[float]]] = []
    for path in sorted((Path(workdir) / TENSORBOARD_DIR).glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                found = [f for f in found if f[0] < event.step]  # TensorBoard's purge: a restart at this step
            for value in event.summary.value:
                found.append((event.step, value.tag, value.simple_value if value.HasField("simple_value") else None))
    return found
