"""The experiment around the training loop: the run directory a recipe's parts train in
(checked, locked, written).

zoo/core/assembly.py builds the parts; zoo/training/loop.py holds the jitted step and the loop;
zoo/evaluation/trained_run.py the `Run` a trained run directory loads as.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Mapping, Optional

from zoo.core.assembly import Experiment, assemble
from zoo.core.conflicts import budget_shortfalls
from zoo.core.data import batch_indices
from zoo.core.recipes import early_stopping_config, train_config
from zoo.core.registry import Registry
from zoo.errors import RecipeError
from zoo.training import checkpoints, loop, parallel, runs
from zoo.training.signals import stop_requested_by_signals


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
    mesh = loop.training_mesh(config)
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
        return loop.train_loop(
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
