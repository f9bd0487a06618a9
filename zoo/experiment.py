"""The experiment around the training loop: what a recipe builds, and the run directory
it trains in (checked, locked, written).

zoo/training.py holds the jitted step and the loop; zoo/trained_run.py the `Run`
a trained run directory loads as.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional

from flax import nnx

from zoo import checkpoints, parallel, runs, training
from zoo.contract import example_batch
from zoo.data import batch_indices, build_condition, build_dataset
from zoo.errors import ModelBuildError, RecipeError
from zoo.interfaces import Dataset, objective_latent_kinds, undefined_metrics
from zoo.model import LatentVariableModel, build_model
from zoo.conflicts import budget_shortfalls
from zoo.recipes import early_stopping_config, train_config
from zoo.registry import Registry, build_component
from zoo.signals import stop_requested_by_signals


@dataclasses.dataclass
class Experiment:
    """What a recipe builds: data, condition, model and objective."""

    recipe: Mapping[str, Any]
    dataset: Dataset
    condition: Any
    model: LatentVariableModel
    objective: Any


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
    # Objectives with schedules (the KL warm-up) learn the budget's length in steps.
    objective = build_component(
        registry,
        "objective",
        recipe["objective"],
        ModelBuildError,
        steps_per_epoch=config.steps_per_epoch(train_size),
        total_steps=config.total_steps(train_size),
    )
    undefined_metrics(
        model.encoder, model.prior, model.decoder, model.likelihood, objective
    )  # a misnamed metric is refused here
    if model.latent_kind not in objective_latent_kinds(objective):
        raise ModelBuildError(
            f"objective {recipe['objective']['name']!r} works with a {' or '.join(objective_latent_kinds(objective))} latent; "
            f"encoder {recipe['encoder']['name']!r} gives a {model.latent_kind} one"
        )
    return Experiment(recipe, dataset, condition, model, objective)


def train_and_evaluate(
    recipe: Mapping[str, Any],
    workdir: Path,
    registry: Registry,
    *,
    resume: bool = False,
    progress: bool = True,
    data_dir: Optional[str] = None,
    max_seconds: Optional[float] = None,
) -> dict[str, Any]:
    """Train a resolved recipe in `workdir` (resumable), validating every `train.validate_every`.

    The budget is `train.steps` or `train.epochs`; with `train.early_stopping`
    training ends when the validation metric stops improving. The best
    checkpoint by that metric (ELBO without early stopping) is kept beside the
    newest. With `max_seconds`, training stops (and checkpoints) at the first
    log boundary past that much training time. One process trains in a
    workdir at a time (WORKDIR/trainer.lock); SIGINT or SIGTERM checkpoints
    the step reached and raises `TrainingInterrupted`. Returns the last logged
    training metrics, validation ELBO, the step reached and the best step.
    """
    workdir = Path(workdir)
    config = train_config(recipe)
    experiment = assemble(recipe, registry, data_dir)  # before touching the workdir: a bad recipe leaves no run behind
    batch_indices(
        len(experiment.dataset.train.images), config.batch_size, config.seed, 0, 1
    )  # refuses a batch larger than the data
    check_validation_split(experiment)
    mesh = training.training_mesh(config)
    main = parallel.is_main_process()
    if main:
        say_budget_shortfalls(experiment, config)
    # Every process checks the run directory before any writes to it (a refusal stops them all
    # alike, and no process can find what process 0 has just written and take it for another run).
    runs.prepare(workdir, recipe, resume=resume, write=False, registry=registry)
    parallel.wait_for_every_process("zoo: the run directory is checked")
    lock = runs.trainer_lock(workdir, note=runs.tell) if main else contextlib.nullcontext()
    with lock, stop_requested_by_signals() as stop_request:
        if main:  # checked again under the lock (another trainer may have started meanwhile), then written
            runs.prepare(workdir, recipe, resume=resume, write=True, registry=registry)
        return training.train_loop(
            experiment, config, workdir, mesh, stop_request, progress=progress, max_seconds=max_seconds
        )


def check_validation_split(experiment: Experiment) -> None:
    """Refuse early stopping on a dataset without validation split: it would never look."""
    recipe = experiment.recipe
    if early_stopping_config(recipe) is not None and not len(experiment.dataset.validation.images):
        raise RecipeError(
            f"{recipe['variant']}.train.early_stopping: it watches the validation split, which dataset "
            f"{recipe['dataset']['name']!r} leaves empty here (dataset.validation_size: "
            f"{recipe['dataset'].get('validation_size', 'its own')}); give it one, or drop train.early_stopping"
        )


def say_budget_shortfalls(experiment: Experiment, config) -> None:
    """Say which settings the budget leaves without effect: early stopping that cannot stop the run,
    a schedule cut short. Recipe validation refuses them where they were given beside or above the
    budget; a budget given above them (--set train.steps, a suite's budget) gets this line."""
    stopping = early_stopping_config(experiment.recipe)
    shortfalls = budget_shortfalls(config, stopping, len(experiment.dataset.train.images))
    for setting, problem in shortfalls.items():
        effect = (
            "cannot stop this run, which trains its whole budget (keeping the best checkpoint)"
            if setting == "train.early_stopping"
            else "is cut short by the budget"
        )
        runs.tell(f"{setting} {effect}: {problem}")


def checkpoint_used(workdir: Path, step: int) -> str:
    """ "best" when `step` is the run's best checkpoint, else "newest"."""
    best = checkpoints.restore_best_step(Path(workdir))
    return "best" if best == step else "newest"
