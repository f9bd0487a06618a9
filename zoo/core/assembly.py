"""What a recipe builds: its dataset, condition, model and objective, assembled from the
registry and checked against each kind's contract before anything trains.

The training loop (zoo/training/) takes an `Experiment`; so does a trained `Run`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Hashable, Mapping, Optional

from flax import nnx

from zoo.core.contract import KINDS_OF_MODEL, example_batch
from zoo.core.data import build_condition, build_dataset
from zoo.core.groups import check_groups, parameter_groups
from zoo.core.interfaces import Dataset, objective_latent_kinds, undefined_metrics
from zoo.core.model import LatentVariableModel, build_model
from zoo.core.recipes import dump, train_config
from zoo.core.registry import Registry, build_component
from zoo.errors import ModelBuildError


@dataclasses.dataclass
class Experiment:
    """What a recipe builds: data, condition, model and objective."""

    recipe: Mapping[str, Any]
    dataset: Dataset
    condition: Any
    model: LatentVariableModel
    objective: Any
    # What decides the run's jitted programs besides the model's GraphDef (program_structure):
    # a run of the same structure reuses them (zoo.training.programs). None: built every time.
    structure: Optional[Hashable] = None


def assemble(
    recipe: Mapping[str, Any], registry: Registry, data_dir: Optional[str] = None, check_values: bool = True
) -> Experiment:
    """Build every part of a resolved recipe; incompatible parts are refused here (with
    `check_values`, also non-finite outputs of the untrained model on a few examples)."""
    dataset = build_dataset(recipe, registry, data_dir)
    condition = build_condition(recipe, registry, dataset)
    rngs = nnx.Rngs(recipe["train"]["seed"])
    model = build_model(
        recipe,
        registry,
        x_shape=condition.x_shape,
        c_shape=condition.c_shape,
        rngs=rngs,
        example=example_batch(recipe, dataset, condition) if check_values else None,
    )
    config = train_config(recipe)
    train_size = len(dataset.train.images)
    # Objectives with schedules (the KL warm-up) learn the budget's length in steps; those with
    # networks of their own build them here, from the model's rngs, and the model carries them.
    objective = build_component(
        registry,
        "objective",
        recipe["objective"],
        ModelBuildError,
        steps_per_epoch=config.steps_per_epoch(train_size),
        total_steps=config.total_steps(train_size),
        batch_size=config.batch_size,
        latent_dim=model.latent_dim,
        x_shape=tuple(condition.x_shape),
        c_shape=None if condition.c_shape is None else tuple(condition.c_shape),
        rngs=rngs,
    )
    model.attach_networks(getattr(objective, "networks", None) or {})
    check_groups(nnx.state(model), parameter_groups(objective), recipe["objective"]["name"])
    undefined_metrics(
        model.encoder, model.prior, model.decoder, model.likelihood, objective
    )  # a misnamed metric is refused here
    if model.latent_kind not in objective_latent_kinds(objective):
        raise ModelBuildError(
            f"objective {recipe['objective']['name']!r} works with a {' or '.join(objective_latent_kinds(objective))} latent; "
            f"encoder {recipe['encoder']['name']!r} gives a {model.latent_kind} one"
        )
    structure = program_structure(recipe, registry, condition, train_size)
    return Experiment(recipe, dataset, condition, model, objective, structure)


# Train settings that decide when the loop logs, validates, checkpoints and stops, not what a
# step computes: left out of program_structure (the budget enters as its length in steps).
NOT_IN_THE_STEP = (
    "seed",
    "steps",
    "epochs",
    "log_every",
    "checkpoint_every",
    "validate_every",
    "early_stopping",
    "tensorboard",
    "input",
    "memory_budget_mb",
    "loop",
)


def program_structure(
    recipe: Mapping[str, Any], registry: Registry, condition: Any, train_size: int
) -> Optional[tuple[Any, ...]]:
    """Everything a run's training step closes over, as a key: the resolved recipe as text
    without its seed (which the step takes as an argument) and the loop's bookkeeping, the
    budget in steps and the size of the training split (an objective's schedules count steps),
    the factory of each component and of the objective (another definition, as when a notebook
    cell runs again, is another key), and the condition (conditions are frozen dataclasses,
    equal when alike). None for a recipe YAML cannot write."""
    train = {key: value for key, value in recipe["train"].items() if key not in NOT_IN_THE_STEP}
    try:
        text = dump({**recipe, "train": train})
    except Exception:  # a recipe holding objects: its programs are built every time
        return None
    factories = tuple(registry.get(kind, recipe[kind]["name"]).factory for kind in (*KINDS_OF_MODEL, "objective"))
    return (text, factories, condition, train_size, train_config(recipe).total_steps(train_size))
