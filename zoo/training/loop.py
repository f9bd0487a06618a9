"""Training: one jitted step on pure state, called from a plain Python loop.

The experiment around the loop (building the recipe, checking and locking the
run directory, loading a trained run) is zoo/training/experiment.py.

The NNX graph is split once; the hot loop is a plain `jax.jit` (with the state
donated) over `(params, opt_state)`, which is about 20% faster here than
`nnx.jit`. Checkpoints are written with orbax, metrics as JSON lines.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo.training import checkpoints, early_stopping, inputs, parallel, runs
from zoo.core import optim
from zoo.config import EarlyStopping, SelectionMetric
from zoo.training.early_stopping import should_stop
from zoo.errors import TrainingDivergedError
from zoo.training.validation import make_bound_metrics, over_batches
from zoo.core.interfaces import Batch
from zoo.core.model import LatentVariableModel
from zoo.core.recipes import early_stopping_config
from zoo.progress import Progress
from zoo.training.signals import StopRequest, TrainingInterrupted
from zoo.training.tensorboard import TensorBoardLog
from zoo.training.log_window import LogWindow

if TYPE_CHECKING:
    from zoo.core.assembly import Experiment

# What each validation records (`loss` only where the best checkpoint is chosen by it).
VALIDATION_METRICS = ("elbo", "kl", "reconstruction_error", "loss")


def selection_metric(objective) -> SelectionMetric:
    """The validation metric the best checkpoint is chosen by when the recipe sets no early
    stopping: "elbo", or what the objective declares (`loss_fn.selection_metric = "loss"`)."""
    return getattr(objective, "selection_metric", "elbo")


class TrainState(NamedTuple):
    """Everything that changes during training, as a pytree."""

    params: Any
    opt_state: Any


def make_optimizer(config) -> optax.GradientTransformation:
    """The recipe's optax chain (a TrainConfig), or Adam at a learning rate given as a number."""
    if isinstance(config, (int, float)):
        return optax.adam(config)
    return optim.make_optimizer(config)


def make_train_step(
    graphdef: nnx.GraphDef,
    objective,
    condition,
    optimizer: optax.GradientTransformation,
    seed: int,
    dynamic_binarization: bool = False,
    mesh: Optional[parallel.Mesh] = None,
    streaming: bool = False,
):
    """`(state, images, labels, chunk_indices[n, B], position, step) -> (state, metrics)`,
    jitted with the state donated; with `streaming`, `(state, block_images[n, B, ...], block_labels, position, step)`.

    One step per call, driven from Python (`make_scanned_steps` runs several per
    call). With a `mesh`, the batch is split over its devices and the state
    stays replicated. In memory, the step gathers its batch from the dataset on
    the device; streamed, it takes its batch from a block of a few steps'
    batches. Both then do the same: the same binarization draw and the same
    update for the same step.
    """
    step_function = train_step_function(
        graphdef, objective, condition, optimizer, seed, dynamic_binarization, mesh, streaming
    )
    if mesh is None:
        return jax.jit(step_function, donate_argnums=0)
    return jax.jit(step_function, donate_argnums=0, out_shardings=parallel.replicated(mesh))


def make_scanned_steps(graphdef: nnx.GraphDef, objective, condition, optimizer, seed: int, dynamic_binarization=False):
    """`(state, images, labels, chunk_indices[n, B], start) -> (state, metrics[n])`: the in-memory steps
    start..start+n-1 of `make_train_step` in one call, as a `lax.scan` over them, jitted with the state
    donated. The same updates; it saves the per-step dispatch, which is most of a small model's step
    on a CPU, while XLA's CPU backend has run some models (convolutions) several times slower inside
    a scan, so zoo.training.inputs measures both and keeps the faster (`train.loop`)."""
    step_function = train_step_function(graphdef, objective, condition, optimizer, seed, dynamic_binarization)

    def scanned(state: TrainState, images, labels, chunk_indices, start):
        def body(state, position):
            return step_function(state, images, labels, chunk_indices, position, start + position)

        return jax.lax.scan(body, state, jnp.arange(chunk_indices.shape[0]))

    return jax.jit(scanned, donate_argnums=0)


def train_step_function(
    graphdef: nnx.GraphDef,
    objective,
    condition,
    optimizer: optax.GradientTransformation,
    seed: int,
    dynamic_binarization: bool = False,
    mesh: Optional[parallel.Mesh] = None,
    streaming: bool = False,
):
    """The step of `make_train_step`, not jitted."""
    schedules = takes_step(objective)

    def loss_fn(params, batch: Batch, rng, step):
        model = nnx.merge(graphdef, params)
        return objective(model, batch, rng, step=step) if schedules else objective(model, batch, rng)

    def update(state: TrainState, batch_images, batch_labels, step):
        rng, pixel_rng = step_keys(seed, step)
        if mesh is not None:  # each device binarizes and differentiates its own rows
            batch_images = jax.lax.with_sharding_constraint(batch_images, parallel.batch_sharded(mesh))
        if dynamic_binarization:  # a fresh draw of every pixel each time a batch is drawn
            batch_images = jax.random.bernoulli(pixel_rng, batch_images).astype(batch_images.dtype)
        x, c = condition.split(batch_images, batch_labels)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, Batch(x, c), rng, step)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), {"loss": loss, **metrics}

    def train_step(state: TrainState, images, labels, chunk_indices, position, step):
        indices = chunk_indices[position]
        return update(state, images[indices], labels[indices], step)

    def streamed_step(state: TrainState, block_images, block_labels, position, step):
        return update(state, block_images[position], block_labels[position], step)

    return streamed_step if streaming else train_step


def takes_step(objective) -> bool:
    """Whether an objective takes the training step (for its schedules); `(model, batch, rng)` ones do not."""
    try:
        parameters = inspect.signature(objective).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "step" or p.kind is p.VAR_KEYWORD for p in parameters)


def step_keys(seed, step) -> jax.Array:
    """(objective key, pixel key) of one training step: a function of the seed and step alone."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), step))


def step_key(seed: int, step: int) -> jax.Array:
    """The PRNG key the objective gets at one training step."""
    return step_keys(seed, step)[0]


def chunk_end(step: int, total: int, *periods: int) -> int:
    """The next step at which to log or checkpoint (or the end)."""
    return min([total] + [(step // p + 1) * p for p in periods])


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
    """The training loop of `train_and_evaluate`, in a prepared (and locked) workdir."""
    main = parallel.is_main_process()
    train = experiment.dataset.train
    total = config.total_steps(len(train.images))
    steps_per_epoch = config.steps_per_epoch(len(train.images))
    graphdef, optimizer, state = initial_state(experiment.model, config)
    if mesh is not None:
        state = parallel.replicate(state, mesh)
    stopping = early_stopping_config(experiment.recipe)
    # Without early stopping the best checkpoint is still kept: by ELBO, or by the objective's own
    # loss where it declares that it is no ELBO (`selection_metric`, e.g. WAE-MMD's deterministic encoder).
    watched = stopping or EarlyStopping(metric=selection_metric(experiment.objective))
    # Process 0 has written the run directory meanwhile: the processes meet before orbax's first
    # collectives, and again before the first step's (see parallel.wait_for_every_process).
    parallel.wait_for_every_process("zoo: checkpoints are opened")
    manager = checkpoints.checkpoint_manager(workdir, trainer=True)
    best_manager = checkpoints.best_checkpoint_manager(workdir, watched.metric, watched.higher_is_better, trainer=True)
    step, state, watch, window = resume_point(manager, best_manager, state, workdir, watched, main)
    if main:  # the log of one run: nothing after the restored step (all of it when no checkpoint was restored)
        runs.truncate_metrics(workdir, step)
    input_kind = inputs.choose_input(config, train)
    batches = training_input(experiment, config, graphdef, optimizer, input_kind, step, total, mesh)
    validate = make_bound_metrics(
        graphdef, experiment.condition, experiment.objective if watched.metric == "loss" else None
    )
    validation_every = config.validation_period(len(train.images))
    summary: dict[str, Any] = {
        "workdir": str(workdir),
        "step": step,
        "total_steps": total,
        "best_step": watch.best_step,
        "input": input_kind,
    }
    bar = Progress(total, "training", unit="steps", initial=step, enabled=progress)
    board = TensorBoardLog(
        workdir, step + 1, enabled=main and config.tensorboard
    )  # purges what a killed run logged after `step`
    trained_seconds = 0.0
    stopped = should_stop(watch, stopping)
    parallel.wait_for_every_process("zoo: training starts")
    with contextlib.closing(board), bar:
        while step < total and not stopped and not stop_request:
            planned = chunk_end(step, total, config.log_every, config.checkpoint_every, validation_every)
            began = time.perf_counter()
            new_state, metrics = batches.run(state, step, planned, halt=stop_request)
            losses = np.asarray(metrics["loss"])
            seconds = time.perf_counter() - began
            end = step + len(losses)  # fewer steps than asked when a stop signal came
            if not np.all(np.isfinite(losses)):
                bad = step + int(np.argmax(~np.isfinite(losses))) + 1
                raise TrainingDivergedError(
                    f"loss became {losses[bad - step - 1]} at step {bad}; {checkpoints.last_good(manager, workdir)} "
                    "(try a lower train.learning_rate, then `zoo train ... --resume`)"
                )
            state, step = new_state, end
            trained_seconds += seconds
            summary["loop"] = getattr(batches, "loop", "step").replace("auto", "step")  # auto: not calibrated yet
            if getattr(batches, "timings", None):
                summary["loop_seconds_per_step"] = batches.timings
            out_of_time = max_seconds is not None and trained_seconds >= max_seconds
            window = window.add(metrics, seconds)
            logged = {k: v for k, v in window.means().items() if k != "steps_per_second"}
            # A stop signal that came mid-window leaves its steps to the checkpoint (zoo/training/log_window.py).
            if step == planned:
                if main:
                    at = {"step": step, "epoch": round(step / steps_per_epoch, 3), "split": "train"}
                    write_record(workdir, board, {**at, **window.means()})
                window = LogWindow()
            bar.update(len(losses))
            bar.note(loss=f"{logged['loss']:.2f}", elbo=f"{logged.get('elbo', float('nan')):.2f}")
            summary.update(step=step, train=logged)
            record = None
            scheduled = step % validation_every == 0 or step == total
            if (scheduled or out_of_time) and len(experiment.dataset.validation.images):
                bounds = over_batches(
                    validate, state.params, experiment.dataset.validation, jax.random.key(config.seed + 1), 256, mesh
                )
                values = {k: float(np.mean(bounds[k])) for k in VALIDATION_METRICS if k in bounds}
                if scheduled:  # a stop by the time limit validates off schedule: early stopping does not count it
                    watch, improved = early_stopping.update(watch, values[watched.metric], step, watched)
                    if improved:
                        checkpoints.save_best(best_manager, step, state, values)
                    stopped = should_stop(watch, stopping)
                summary["validation_elbo"] = values["elbo"]
                record = {
                    "step": step,
                    "epoch": round(step / steps_per_epoch, 3),
                    "split": "validation",
                    **values,
                    "best_step": watch.best_step,
                    "waited": watch.waited,
                }
            if main and record is not None:  # before the checkpoint: a kill between the two leaves a record that
                write_record(
                    workdir, board, record
                )  # resume truncates and redoes, never a checkpoint without its record
            if step % config.checkpoint_every == 0 or step == total or out_of_time or stopped or stop_request:
                checkpoints.save(manager, step, state, progress_of(watch, window))
                board.samples(experiment, graphdef, state.params, config.seed, step)
            if out_of_time:
                summary["stopped_by_time_limit"] = True
                break
    manager.wait_until_finished()
    if stop_request:
        if manager.latest_step() != step:  # the signal came before any step of this session ran
            checkpoints.save(manager, step, state, progress_of(watch, window))
        raise TrainingInterrupted(
            f"stopped by {stop_request.name} at step {step} of {total}; "
            f"checkpoint written in {workdir / checkpoints.CHECKPOINT_DIR / str(step)}",
            stop_request.signum or 0,
            step,
        )
    summary.update(
        best_step=watch.best_step,
        stopped_early=stopped,
        epochs=round(step / steps_per_epoch, 3),
        best_epoch=None if watch.best_step is None else round(watch.best_step / steps_per_epoch, 3),
    )
    return summary


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
    if watch.best is not None and watch.best_step == step and step not in best_manager.all_steps():
        if main:
            runs.tell(
                f"the best checkpoint of step {step} is missing from {workdir / checkpoints.BEST_DIR}; "
                "writing it again from the training checkpoint of that step"
            )
        checkpoints.save_best(best_manager, step, state, {watched.metric: watch.best})
    return step, state, watch, window


def write_record(workdir: Path, board: TensorBoardLog, record: Mapping[str, Any]) -> None:
    """One line of metrics.jsonl, and the same values as TensorBoard scalars."""
    runs.append_metrics(workdir, record)
    board.scalars(record["split"], record, record["step"])


def initial_state(model: LatentVariableModel, config) -> tuple[nnx.GraphDef, optax.GradientTransformation, TrainState]:
    """(graphdef, optimizer, state) of an untrained model under the recipe's optimiser."""
    graphdef, params = nnx.split(model)
    optimizer = make_optimizer(config)
    return graphdef, optimizer, TrainState(params, optimizer.init(params))


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
        )
    return inputs.InMemoryInput(train_step, split, config.batch_size, config.seed, mesh, scanned, config.loop)


def training_mesh(config) -> Optional[parallel.Mesh]:
    """The data-parallel mesh of `train.devices` (None: one device, one process, no sharding)."""
    mesh = parallel.mesh_for(config.devices)
    if mesh is not None:
        parallel.check_divisible(config.batch_size, mesh)
    return mesh
