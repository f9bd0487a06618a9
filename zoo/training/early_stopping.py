"""Early stopping as a pure update of a small record, saved in every checkpoint.

After each validation `update` says whether the watched metric improved (then
the best checkpoint is replaced) and `should_stop` whether `patience`
validations in a row brought no improvement. The record is plain JSON, so a
resumed run continues with the counter it had.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from zoo.config import EarlyStopping


@dataclasses.dataclass(frozen=True)
class Watch:
    """The watched metric's best value and step, validations since it improved, validations seen."""

    best: Optional[float] = None
    best_step: Optional[int] = None
    waited: int = 0
    seen: int = 0

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Optional[Mapping[str, Any]]) -> "Watch":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (record or {}).items() if k in fields})


def improves(value: float, best: Optional[float], higher_is_better: bool) -> bool:
    """Whether `value` beats `best` (anything beats no value yet)."""
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def update(watch: Watch, value: float, step: int, settings: EarlyStopping) -> tuple[Watch, bool]:
    """The watch after one validation, and whether this validation is the best so far.

    During the first `grace` validations the counter stays at 0 (the VampPrior
    code does this through its KL warm-up, when the ELBO is not yet the one trained).
    """
    seen = watch.seen + 1
    if improves(value, watch.best, settings.higher_is_better):
        return Watch(float(value), int(step), 0, seen), True
    waited = 0 if seen <= settings.grace else watch.waited + 1
    return Watch(watch.best, watch.best_step, waited, seen), False


def should_stop(watch: Watch, settings: Optional[EarlyStopping]) -> bool:
    """True once `patience` validations in a row have not improved on the best."""
    return settings is not None and watch.waited >= settings.patience
