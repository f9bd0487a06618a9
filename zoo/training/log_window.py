"""The training records of WORKDIR/metrics.jsonl: each holds the means of the training metrics
over the steps since the previous training record.

A record is written where the loop pauses (every `train.log_every` steps, and where a
checkpoint, a validation or the end of the budget falls between two of them). A stop by
signal pauses it anywhere: the steps since the last record are then written into the
checkpoint as an open window rather than logged, and the resumed run's next record covers
them, so a stopped and resumed run logs what one never stopped logs (but for its
`steps_per_second`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class LogWindow:
    """The steps since the last training record: how many, their training seconds, each metric's sum."""

    steps: int = 0
    seconds: float = 0.0
    sums: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def add(self, metrics: Mapping[str, Any], seconds: float) -> "LogWindow":
        """The window with a chunk of steps added (`metrics`: one value per step of each metric)."""
        chunk = {name: np.asarray(values, dtype=np.float64) for name, values in metrics.items()}
        steps = len(next(iter(chunk.values())))
        sums = {name: self.sums.get(name, 0.0) + float(values.sum()) for name, values in chunk.items()}
        return LogWindow(self.steps + steps, self.seconds + seconds, sums)

    def means(self) -> dict[str, float]:
        """Each metric's mean over the window, and the window's steps per second."""
        means = {name: total / self.steps for name, total in self.sums.items()}
        return {**means, "steps_per_second": self.steps / self.seconds if self.seconds > 0 else float("nan")}

    def as_json(self) -> Optional[dict[str, Any]]:
        """What a checkpoint keeps of it; None for an empty window."""
        return dataclasses.asdict(self) if self.steps else None

    @classmethod
    def from_json(cls, record: Optional[Mapping[str, Any]]) -> "LogWindow":
        """The window a checkpoint kept (an empty one when it kept none)."""
        if not record:
            return cls()
        return cls(int(record["steps"]), float(record["seconds"]), dict(record["sums"]))
