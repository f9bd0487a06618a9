"""Settings that would lose without a word: two of which only one can count, given together, and
settings the budget leaves without effect (early stopping that could never stop the run, a
learning-rate schedule longer than the budget). zoo/core/recipes.py applies them as it lays a recipe's
layers (the recipes of its `base:` chain, then --set) over one another; training says what the
budget cuts short (zoo/training/experiment.py).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Optional

from zoo.core import optim
from zoo.config import EarlyStopping, TrainConfig
from zoo.errors import RecipeError

# Settings of which a recipe gives one, the other then meaningless (null, or a warm-up of 0, gives
# neither); train.learning_rate and the schedule's own rate are another such pair (`alternatives`).
# A recipe, each one it inherits from, and --set are layers: a layer that gives one of a pair drops
# the other from the layers beneath it, as it overrides any key; one layer giving both is refused.
ALTERNATIVES = (("train.steps", "train.epochs"), ("objective.kl_warmup_steps", "objective.kl_warmup_epochs"))


def leaf_paths(recipe: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The key paths of a recipe's values ('train.steps', 'encoder.hidden'), mappings entered."""
    for key, value in recipe.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from leaf_paths(value, path + ".")
        else:
            yield path


def lookup(recipe: Mapping[str, Any], path: str) -> Any:
    """The value at key path 'a.b' of a recipe; None when absent."""
    node: Any = recipe
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def is_given(value: Any) -> bool:
    """A value that counts as given for ALTERNATIVES: not null, and no warm-up of 0."""
    return value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)


def alternatives(recipe: Mapping[str, Any]) -> list[tuple[str, str]]:
    """ALTERNATIVES, and train.learning_rate with the rate its schedule takes it for (peak_value, ...)."""
    schedule = lookup(recipe, "train.schedule")
    key = optim.rate_key(schedule.get("name")) if isinstance(schedule, Mapping) else None
    return list(ALTERNATIVES) + ([("train.learning_rate", f"train.schedule.{key}")] if key else [])


def settle_alternatives(merged: dict[str, Any], gives: Callable[[str], bool], where: str) -> None:
    """Lay one layer's choices among `alternatives` over `merged` (that layer merged over those
    beneath it): `gives(path)` says whether the layer itself gives a key path."""
    for first, second in alternatives(merged):
        here = [path for path in (first, second) if gives(path) and is_given(lookup(merged, path))]
        if len(here) == 2:
            raise RecipeError(
                f"{where}: {first} ({lookup(merged, first)!r}) and {second} ({lookup(merged, second)!r}) "
                "are both given, and only one of them can count; give one"
            )
        if here:
            dropped = second if here[0] == first else first
            section, _, key = dropped.rpartition(".")
            parent = lookup(merged, section)
            if isinstance(parent, dict):
                parent.pop(key, None)


def budget_shortfalls(
    train: TrainConfig, stopping: Optional[EarlyStopping], train_size: Optional[int] = None
) -> dict[str, str]:
    """{setting: why it cannot take effect within the budget}, for early stopping that could never
    stop the run and a learning-rate schedule longer than the budget. A setting whose fit depends on
    the training split's size is left out while `train_size` is not known."""
    total = train.budget_steps(train_size)
    budget = (
        f"{total} steps (train.steps)"
        if train.epochs is None
        else f"{train.epochs:g} epochs (train.epochs{f', {total} steps' if total is not None else ''})"
    )
    found = {}
    validations = train.validations(train_size)
    if stopping is not None and validations is not None and validations < stopping.validations_to_stop:
        every = (
            "epoch"
            if train.validate_every == "epoch"
            else f"{train.validate_every} steps (train.validate_every)"
            if train.validate_every
            else f"{train.checkpoint_every} steps (train.checkpoint_every, as train.validate_every is null)"
        )
        grace = f" after a grace of {stopping.grace}" if stopping.grace else ""
        found["train.early_stopping"] = (
            f"patience {stopping.patience}{grace} needs {stopping.validations_to_stop} validations to stop a run, "
            f"and validating every {every} leaves {validations} in the budget of {budget}"
        )
    length = optim.schedule_steps(train.schedule) if train.schedule else 0
    if total is not None and length > total:
        found["train.schedule"] = f"{train.schedule['name']} runs {length} steps, beyond the budget of {budget}"  # type: ignore[index]
    return found


def check_budget_fits(resolved: Mapping[str, Any], layer: Callable[[str], int], origin: Callable[[str], str]) -> None:
    """Refuse a setting that cannot take effect within the budget (`budget_shortfalls`) where it was
    given in the budget's layer or above it: whoever gave it could see the budget. One that a
    budget given above it cuts short (--set train.steps on a recipe with early stopping, a suite's
    budget) is said when training starts instead (zoo.training)."""
    train = TrainConfig(**resolved["train"])
    budget_layer = layer("train.epochs" if train.epochs is not None else "train.steps")
    # What decides how often early stopping looks: the period of validation, or of checkpoints when that is null.
    period = "train.validate_every" if train.validate_every is not None else "train.checkpoint_every"
    stopping = resolved["train"].get("early_stopping")
    for setting, problem in budget_shortfalls(train, stopping and EarlyStopping(**stopping)).items():
        given_at = layer(setting) if setting == "train.schedule" else max(layer(setting), layer(period))
        if given_at >= 0 and given_at >= budget_layer:
            hint = (
                "it could never stop the run; validate more often, or drop train.early_stopping"
                if setting == "train.early_stopping"
                else "training would end before it does; shorten the schedule, or give a longer budget"
            )
            raise RecipeError(f"{origin(setting)}: {resolved['variant']}.{setting}: {problem}: {hint}")
