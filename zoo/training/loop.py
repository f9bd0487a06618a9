"""Training: the jitted step of zoo/training/step.py, called from a plain Python loop in
chunks between logs, validations and checkpoints.

The experiment around the loop (checking and locking the run directory) is
zoo/training/experiment.py; what a recipe builds, zoo/core/assembly.py.
Checkpoints are written with orbax, metrics as JSON lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np
from flax import nnx

from zoo.training import checkpoints, early_stopping, inputs, parallel, runs
from zoo.config import EarlyStopping, SelectionMetric
from zoo.training.early_stopping import should_stop
from zoo.errors import TrainingDivergedError
from zoo.training.validation import make_bound_metrics, over_batches
from zoo.core.assembly import Experiment
from zoo.core.recipes import early_stopping_config
from zoo.progress import Progress
from zoo.training.signals import StopRequest, TrainingInterrupted
from zoo.training.step import TrainState, initial_state, make_scanned_steps, make_train_step
from zoo.training.tensorboard import TensorBoardLog
from zoo.training.log_window import LogWindow


# What each validation records (`loss` only where the best checkpoint is chosen by it).
VALIDATION_METRICS = ("elbo", "kl", "reconstruction_error", "loss")


def selection_metric(objective) -> SelectionMetric:
    """The validation metric the best checkpoint is chosen by when the recipe sets no early
    stopping: "elbo", or what the objective declares (`loss_fn.selection_metric = "loss"`)."""
    return getattr(objective, "selection_metric", "elbo")


def chunk_end(step: int, total: int, *periods: int) -> int:
    """The next step at which to log or checkpoint (or the end)."""
    return min([total] + [(step // p + 1) * p for p in periods])


@dataclasses.dataclass(frozen=True)
class Session:
    """What stays fixed while one session of training runs in a workdir: the budget, what the
    best checkpoint is chosen by, and the two checkpoint managers."""

    experiment: Experiment
    config: Any
    workdir: Path
    mesh: Optional[parallel.Mesh]
    main: bool  # process 0 writes the run's files
    total: int
    steps_per_epoch: int
    validation_every: int
    stopping: Optional[EarlyStopping]  # the recipe's early stopping, if any
    watched: EarlyStopping  # what the best checkpoint is chosen by (with or without early stopping)
    manager: Any
    best_manager: Any

    def epoch(self, step: int) -> float:
        return round(step / self.steps_per_epoch, 3)


def open_session(experiment: Experiment, config, workdir: Path, mesh: Optional[parallel.Mesh]) -> Session:
    """The session's fixed settings and its checkpoint managers."""
    train_size = len(experiment.dataset.train.images)
    stopping = early_stopping_config(experiment.recipe)
    # Without early stopping the best checkpoint is still kept: by ELBO, or by the objective's own
    # loss where it declares that it is no ELBO (`selection_metric`, e.g. WAE-MMD's deterministic encoder).
    watched = stopping or EarlyStopping(metric=selection_metric(experiment.objective))
    # Process 0 has written the run directory meanwhile: the processes meet before orbax's first
    # collectives, and again before the first step's (see parallel.wait_for_every_process).
    parallel.wait_for_every_process("zoo: checkpoints are opened")
    return Session(
        experiment,
        config,
        workdir,
        mesh,
        parallel.is_main_process(),
        config.total_steps(train_size),
        config.steps_per_epoch(train_size),
        config.validation_period(train_size),
        stopping,
        watched,
        checkpoints.checkpoint_manager(workdir, trainer=True),
        checkpoints.best_checkpoint_manager(workdir, watched.metric, watched.higher_is_better, trainer=True),
    )


def progress_of(watch: early_stopping.Watch, window: LogWindow) -> dict[str, Any]:
    """What a checkpoint keeps beside the state: the early stopping watch, and the steps not logged yet."""
    return {"early_stopping": watch.as_json(), **({"log_window": window.as_json()} if window.steps else {})}


def resume_point(manager, best_manager, like: TrainState, workdir: Path, watched: EarlyStopping, main: bool):
    """(step, state, early stopping watch, open log window) to train on from: the newest training
    checkpoint that reads, or the start. The two managers write one after the other (the best checkpoint first),
    so a kill between them, or inside the run's first training checkpoint, leaves best
    checkpoints of training that this resume redoes: they are removed (orbax would refuse to
    take them again) and said. A best checkpoint missing for the very step resumed from is
    written again from it."""
    step, state, watch, window = 0, like, early_stopping.Watch(), LogWindow()
    restored = checkpoints.restore_latest(
        manager, like, note=runs.tell, set_aside=workdir / checkpoints.DAMAGED_DIR if main else None
    )
    if restored is not None:
        step, state, saved_progress = restored
        watch = early_stopping.Watch.from_json(saved_progress.get("early_stopping"))
        window = LogWindow.from_json(saved_progress.get("log_window"))
    stale = checkpoints.drop_best_after(best_manager, step)
    if stale and main:
        newest = "no training checkpoint was written whole" if restored is None else "the newest training checkpoint"
        runs.tell(
            f"resuming from step {step} ({newest}): removing the best checkpoint of step "
            f"{', '.join(map(str, stale))} in {workdir / checkpoints.BEST_DIR}, taken by the training that this resume redoes"
        )
    elif restored is not None and main:  # a user who typed --resume learns where training goes on from
        runs.tell(f"resuming {workdir} from step {step} (the newest training checkpoint)")
    if watch.best is not None and watch.best_step == step and step not in best_manager.all_steps():
        if main:
            runs.tell(
                f"the best checkpoint of step {step} is missing from {workdir / checkpoints.BEST_DIR}; "
                "writing it again from the training checkpoint of that step"
            )
        checkpoints.save_best(best_manager, step, state, {watched.metric: watch.best})
    return step, state, watch, window


def train_chunk(
    session: Session, batches: Any, state: TrainState, step: int, planned: int, stop_request: StopRequest
) -> tuple[TrainState, dict[str, Any], float]:
    """The steps up to `planned`, the next log, checkpoint or validation (fewer when a stop signal
    comes): the new state, each step's metrics and the seconds they took. A non-finite loss is refused."""
    began = time.perf_counter()
    new_state, metrics = batches.run(state, step, planned, halt=stop_request)
    losses = np.asarray(metrics["loss"])
    seconds = time.perf_counter() - began
    if not np.all(np.isfinite(losses)):
        bad = step + int(np.argmax(~np.isfinite(losses))) + 1
        raise TrainingDivergedError(
            f"loss became {losses[bad - step - 1]} at step {bad}; "
            f"{checkpoints.last_good(session.manager, session.workdir)} "
            "(try a lower train.learning_rate, then `zoo train ... --resume`)"
        )
    return new_state, metrics, seconds


def log_training(
    session: Session,
    board: TensorBoardLog,
    bar: Progress,
    window: LogWindow,
    step: int,
    planned: int,
    metrics: dict[str, Any],
    seconds: float,
) -> tuple[dict[str, float], LogWindow]:
    """The chunk's steps added to the open window of steps since the last training record; where the
    chunk ends as planned the window's means are written to the run's log and a new window opens
    (a stop signal that came mid-window leaves its steps to the checkpoint, zoo/training/log_window.py).
    Returns the window's mean training metrics, shown on the progress bar, and the open window."""
    window = window.add(metrics, seconds)
    logged = {k: v for k, v in window.means().items() if k != "steps_per_second"}
    if step == planned:
        if session.main:
            at = {"step": step, "epoch": session.epoch(step), "split": "train"}
            write_record(session.workdir, board, {**at, **window.means()})
        window = LogWindow()
    bar.update(len(metrics["loss"]))
    bar.note(loss=f"{logged['loss']:.2f}", elbo=f"{logged.get('elbo', float('nan')):.2f}")
    return logged, window


def validate_and_watch(
    session: Session, validate: Callable, state: TrainState, step: int, watch: early_stopping.Watch, scheduled: bool
) -> tuple[early_stopping.Watch, dict[str, Any]]:
    """Validate the state; on schedule, early stopping counts it and an improvement becomes the
    best checkpoint (a stop by the time limit validates off schedule, which does not count).
    Returns the watch and the validation's record."""
    split = session.experiment.dataset.validation
    seed = jax.random.key(session.config.seed + 1)
    bounds = over_batches(validate, state.params, split, seed, 256, session.mesh)
    values = {k: float(np.mean(bounds[k])) for k in VALIDATION_METRICS if k in bounds}
    if scheduled:
        watch, improved = early_stopping.update(watch, values[session.watched.metric], step, session.watched)
        if improved:
            checkpoints.save_best(session.best_manager, step, state, values)
    record = {
        "step": step,
        "epoch": session.epoch(step),
        "split": "validation",
        **values,
        "best_step": watch.best_step,
        "waited": watch.waited,
    }
    return watch, record


def checkpoint_step(
    session: Session, board: TensorBoardLog, graphdef, state: TrainState, step: int, watch, window: LogWindow
) -> None:
    """The state at `step` checkpointed with its early-stopping watch and open log window, and
    samples shown on TensorBoard."""
    checkpoints.save(session.manager, step, state, progress_of(watch, window))
    board.samples(session.experiment, graphdef, state.params, session.config.seed, step)


def interrupted(
    session: Session, state: TrainState, step: int, watch, window: LogWindow, stop_request: StopRequest
) -> TrainingInterrupted:
    """The error that ends a session stopped by a signal, once the step reached is checkpointed."""
    if session.manager.latest_step() != step:  # the signal came before any step of this session ran
        checkpoints.save(session.manager, step, state, progress_of(watch, window))
    return TrainingInterrupted(
        f"stopped by {stop_request.name} at step {step} of {session.total}; "
        f"checkpoint written in {session.workdir / checkpoints.CHECKPOINT_DIR / str(step)}",
        stop_request.signum or 0,
        step,
    )


def train_loop(
    experiment: Experiment,
    config,
    workdir: Path,
    mesh: Optional[parallel.Mesh],
    stop_request: StopRequest,
    *,
    progress: bool,
    max_seconds: Optional[float],
) -> dict[str, Any]:
    """The training loop of `train_and_evaluate`, in a prepared (and locked) workdir: chunks of
    steps between logs, validations and checkpoints, until the budget, early stopping, the time
    limit or a stop signal ends it."""
    graphdef, optimizer, state = initial_state(experiment.model, config, experiment.objective)
    if mesh is not None:
        state = parallel.replicate(state, mesh)
    session = open_session(experiment, config, workdir, mesh)
    step, state, watch, window = resume_point(
        session.manager, session.best_manager, state, workdir, session.watched, session.main
    )
    if session.main:  # the log of one run: nothing after the restored step (all of it when no checkpoint was restored)
        runs.truncate_metrics(workdir, step)
    input_kind = inputs.choose_input(config, experiment.dataset.train)
    batches = training_input(experiment, config, graphdef, optimizer, input_kind, step, session.total, mesh)
    loss_objective = experiment.objective if session.watched.metric == "loss" else None
    validate = make_bound_metrics(graphdef, experiment.condition, loss_objective, experiment.structure)
    summary: dict[str, Any] = {
        "workdir": str(workdir),
        "step": step,
        "total_steps": session.total,
        "best_step": watch.best_step,
        "input": input_kind,
    }
    bar = Progress(session.total, "training", unit="steps", initial=step, enabled=progress)
    # TensorBoard purges what a killed run logged after `step`.
    board = TensorBoardLog(workdir, step + 1, enabled=session.main and config.tensorboard)
    trained_seconds = 0.0
    stopped = should_stop(watch, session.stopping)
    parallel.wait_for_every_process("zoo: training starts")
    with contextlib.closing(board), bar:
        while step < session.total and not stopped and not stop_request:
            planned = chunk_end(
                step, session.total, config.log_every, config.checkpoint_every, session.validation_every
            )
            state, metrics, seconds = train_chunk(session, batches, state, step, planned, stop_request)
            step += len(metrics["loss"])
            trained_seconds += seconds
            summary["loop"] = getattr(batches, "loop", "step").replace("auto", "step")  # auto: not calibrated yet
            if getattr(batches, "timings", None):
                summary["loop_seconds_per_step"] = batches.timings
            out_of_time = max_seconds is not None and trained_seconds >= max_seconds
            logged, window = log_training(session, board, bar, window, step, planned, metrics, seconds)
            summary.update(step=step, train=logged)
            scheduled = step % session.validation_every == 0 or step == session.total
            if (scheduled or out_of_time) and len(experiment.dataset.validation.images):
                watch, record = validate_and_watch(session, validate, state, step, watch, scheduled)
                stopped = should_stop(watch, session.stopping) if scheduled else stopped
                summary["validation_elbo"] = record["elbo"]
                # Written before the checkpoint: a kill between the two leaves a record that resume
                # truncates and redoes, never a checkpoint without its record.
                if session.main:
                    write_record(workdir, board, record)
            if step % config.checkpoint_every == 0 or step == session.total or out_of_time or stopped or stop_request:
                checkpoint_step(session, board, graphdef, state, step, watch, window)
            if out_of_time:
                summary["stopped_by_time_limit"] = True
                break
    session.manager.wait_until_finished()
    if stop_request:
        raise interrupted(session, state, step, watch, window, stop_request)
    summary.update(
        best_step=watch.best_step,
        stopped_early=stopped,
        epochs=session.epoch(step),
        best_epoch=None if watch.best_step is None else session.epoch(watch.best_step),
    )
    return summary


def write_record(workdir: Path, board: TensorBoardLog, record: Mapping[str, Any]) -> None:
    """One line of metrics.jsonl, and the same values as TensorBoard scalars."""
    runs.append_metrics(workdir, record)
    board.scalars(record["split"], record, record["step"])


def training_input(
    experiment: Experiment,
    config,
    graphdef: nnx.GraphDef,
    optimizer,
    kind: str,
    start: int,
    stop: int,
    mesh: Optional[parallel.Mesh] = None,
):
    """The jitted step with its input path, in memory or streamed, for steps start..stop-1: `.run(state, a, b)`.
    In memory on one device, steps run one per call or scanned in blocks, as `train.loop` says ("auto": the faster)."""
    train_step = make_train_step(
        graphdef,
        experiment.objective,
        experiment.condition,
        optimizer,
        config.seed,
        experiment.dataset.dynamic_binarization,
        mesh,
        streaming=kind == "stream",
        structure=experiment.structure,
    )
    split = experiment.dataset.train
    if kind == "stream":
        return inputs.StreamedInput(train_step, split, config.batch_size, config.seed, start, stop, mesh)
    scanned = None
    if mesh is None and config.loop != "step":  # on a mesh, one step per call (MAX_STEPS_IN_FLIGHT_ON_A_MESH)
        scanned = make_scanned_steps(
            graphdef,
            experiment.objective,
            experiment.condition,
            optimizer,
            config.seed,
            experiment.dataset.dynamic_binarization,
            structure=experiment.structure,
        )
    return inputs.InMemoryInput(train_step, split, config.batch_size, config.seed, mesh, scanned, config.loop)


def training_mesh(config) -> Optional[parallel.Mesh]:
    """The data-parallel mesh of `train.devices` (None: one device, one process, no sharding)."""
    mesh = parallel.mesh_for(config.devices)
    if mesh is not None:
        parallel.check_divisible(config.batch_size, mesh)
    return mesh
