"""A run's orbax checkpoints: the two newest (training state and progress) and the best ones.

    WORKDIR/checkpoints/N/   the two newest, written atomically by orbax: state and the run's progress
    WORKDIR/best/N/          the best by the validation metric (orbax's best_fn)
    WORKDIR/damaged/         checkpoints a resume found unreadable, moved aside (never deleted)

A damaged checkpoint is passed over for the one before it and named; one that
holds another model than recipe.yaml describes is refused, naming the array.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from zoo.errors import RunDirectoryError, first_line
from zoo.files import naming_write_errors

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
DAMAGED_DIR = "damaged"


class WithoutMissingMetadataNotes(logging.Filter):
    """Drops orbax's 'Metadata file does not exist: .../_CHECKPOINT_METADATA' (logged through absl
    on every restore of a checkpoint written without that optional file): harmless, and printed
    as `WARNING:absl:...` by zoo.load and zoo.train in Python, where the CLI's quieter logging
    does not reach. Only this note goes: every other warning of orbax still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "_CHECKPOINT_METADATA" not in record.getMessage()


# absl logs through the Python logger named "absl"; the filter is added once per process.
if not any(isinstance(f, WithoutMissingMetadataNotes) for f in logging.getLogger("absl").filters):
    logging.getLogger("absl").addFilter(WithoutMissingMetadataNotes())


def checkpoint_manager(workdir: Path, *, trainer: bool = False) -> ocp.CheckpointManager:
    """Orbax manager keeping the two newest checkpoints.

    `trainer`: the process that trains in WORKDIR (holding its lock) also removes the
    temporary directories a killed write left (orbax's `cleanup_tmp_directories`); a
    reader must not, as they may be the trainer's write in progress.
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True, cleanup_tmp_directories=trainer)
    return ocp.CheckpointManager((workdir / CHECKPOINT_DIR).resolve(), options=options)


def best_checkpoint_manager(
    workdir: Path, metric: str = "elbo", higher_is_better: bool = True, *, trainer: bool = False
) -> ocp.CheckpointManager:
    """Orbax manager keeping the two checkpoints whose validation `metric` is best.

    A checkpoint is saved here only when it improves on the best, so the newest
    kept is the best; the one before it survives a resume that drops the newest
    (`drop_best_after`). `trainer` as for `checkpoint_manager`.
    """
    options = ocp.CheckpointManagerOptions(
        max_to_keep=2,
        create=True,
        best_fn=lambda metrics: metrics[metric],
        best_mode="max" if higher_is_better else "min",
        keep_checkpoints_without_metrics=False,
        cleanup_tmp_directories=trainer,
    )
    return ocp.CheckpointManager((workdir / BEST_DIR).resolve(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, progress: Optional[Mapping[str, Any]] = None) -> None:
    """Write a checkpoint of `state` and the run's `progress` at `step` (orbax writes to a temporary dir, then renames)."""
    items = {"state": ocp.args.StandardSave(state), "progress": ocp.args.JsonSave(dict(progress or {}))}
    with naming_write_errors(f"the checkpoint of step {step} in {manager.directory}"):
        manager.save(step, args=ocp.args.Composite(**items))
        manager.wait_until_finished()


def save_best(manager: ocp.CheckpointManager, step: int, state: Any, metrics: Mapping[str, float]) -> None:
    """Keep `state` as the best checkpoint."""
    with naming_write_errors(f"the best checkpoint of step {step} in {manager.directory}"):
        saved = manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), metrics=dict(metrics))
        manager.wait_until_finished()
    if not saved:
        raise RunDirectoryError(f"orbax did not save the best checkpoint of step {step} in {manager.directory}")


def drop_best_after(manager: ocp.CheckpointManager, step: int) -> list[int]:
    """Forget best checkpoints taken after `step`, and return their steps: a resume from `step`
    (0: the start) redoes that training, and would take them again."""
    later = sorted(s for s in manager.all_steps() if s > step)
    for stale in later:
        manager.delete(stale)
    return later


class CheckpointDamaged(Exception):
    """One checkpoint cannot be read (truncated, emptied, garbled); an earlier one may still be good."""


class NoGoodCheckpointError(RunDirectoryError):
    """Every checkpoint of a directory is damaged."""


def stored_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """{leaf path: shape} of the state saved in one checkpoint directory, from orbax's metadata."""
    item = (
        directory / "state" if (directory / "state").is_dir() else directory / "default"
    )  # "default": the earlier format
    try:
        metadata = ocp.StandardCheckpointer().metadata(item.resolve())
        tree = getattr(metadata, "item_metadata", metadata)
        return {leaf_name(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    except Exception as exc:
        raise CheckpointDamaged(first_line(exc, limit=200)) from exc


def leaf_name(path) -> str:
    """'params.encoder.layers.0.kernel': a pytree path with dict keys, attributes and indices alike."""
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def check_matches(directory: Path, like: Any) -> None:
    """Refuse a checkpoint whose arrays are not the model's: recipe.yaml no longer describes it."""
    stored = stored_shapes(directory)
    wanted = {leaf_name(path): tuple(np.shape(leaf)) for path, leaf in jax.tree_util.tree_leaves_with_path(like)}
    if not stored:
        raise CheckpointDamaged("orbax finds no arrays in it")
    for name in wanted:
        if name in stored and stored[name] != wanted[name]:
            raise RunDirectoryError(
                f"the checkpoint {directory} does not match the run's recipe.yaml: {name} is "
                f"{stored[name]} in the checkpoint, {wanted[name]} in the model recipe.yaml describes "
                "(was recipe.yaml edited?)"
            )
    missing, extra = sorted(set(wanted) - set(stored)), sorted(set(stored) - set(wanted))
    differences = ([f"the model has {', '.join(missing[:3])} that the checkpoint lacks"] if missing else []) + (
        [f"the checkpoint has {', '.join(extra[:3])} that the model lacks"] if extra else []
    )
    if differences:
        raise RunDirectoryError(
            f"the checkpoint {directory} does not match the run's recipe.yaml: {'; '.join(differences)} "
            "(was recipe.yaml edited?)"
        )


def restore(
    manager: ocp.CheckpointManager, step: int, like: Any, *, progress: bool = True
) -> tuple[Any, dict[str, Any]]:
    """(state, progress) of the checkpoint at `step`, the state shaped like `like`.

    CheckpointDamaged when it cannot be read; RunDirectoryError when it can
    but holds another model's arrays.
    """
    directory = Path(manager.directory) / str(step)
    check_matches(directory, like)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    items = {"state": ocp.args.StandardRestore(abstract)}
    if progress:
        items["progress"] = ocp.args.JsonRestore()
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as composite_error:
        try:  # a checkpoint written before checkpoints held the run's progress: the state alone
            return manager.restore(step, args=ocp.args.StandardRestore(abstract)), {}
        except Exception:
            raise CheckpointDamaged(first_line(composite_error, limit=200)) from composite_error
    state = restored["state"]
    if not all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.inexact)):
        raise CheckpointDamaged("it holds non-finite numbers")
    return state, dict(restored["progress"] or {}) if progress else {}


def restore_latest(
    manager: ocp.CheckpointManager, like: Any, *, progress: bool = True, note=None, set_aside: Optional[Path] = None
) -> Optional[tuple[int, Any, dict[str, Any]]]:
    """(step, state, progress) of the newest checkpoint that reads, the state shaped like `like`;
    None when there is none.

    A damaged checkpoint is passed over for the one before it, and named
    through `note` once a good one is found; with `set_aside` (resuming
    training, which will write that step again) it is then moved there rather
    than deleted. When every checkpoint is damaged, NoGoodCheckpointError
    lists them and nothing is moved.
    """
    damaged: list[tuple[Path, str]] = []
    for step in sorted(manager.all_steps(), reverse=True):
        directory = Path(manager.directory) / str(step)
        try:
            state, saved = restore(manager, step, like, progress=progress)
        except CheckpointDamaged as exc:
            damaged.append((directory, str(exc)))
            continue
        for bad, reason in damaged:
            if note is not None:
                note(
                    f"the checkpoint {bad} is damaged ({reason}); using step {step} of {manager.directory} instead"
                    + (f", and moving the damaged one to {set_aside}" if set_aside is not None else "")
                )
            if set_aside is not None:
                set_aside.mkdir(parents=True, exist_ok=True)
                os.replace(bad, set_aside / f"{bad.parent.name}-{bad.name}")
        if damaged and set_aside is not None:
            manager.reload()
        return step, state, saved
    if damaged:
        raise NoGoodCheckpointError(
            "no readable checkpoint: " + "; ".join(f"{bad} ({reason})" for bad, reason in damaged)
        )
    return None


def _best_reader(workdir: Path) -> Optional[ocp.CheckpointManager]:
    if not (Path(workdir) / BEST_DIR).is_dir():
        return None
    return ocp.CheckpointManager(
        (Path(workdir) / BEST_DIR).resolve(), options=ocp.CheckpointManagerOptions(create=False)
    )


def restore_best_step(workdir: Path) -> Optional[int]:
    """The step of the run's best checkpoint; None when it kept none."""
    manager = _best_reader(workdir)
    return None if manager is None else manager.latest_step()


def restore_best(workdir: Path, like: Any, *, note=None) -> Optional[tuple[int, Any]]:
    """(step, state) of the run's best checkpoint that reads; None when it kept none, or every one is
    damaged (said through `note`: the caller falls back to the newest checkpoint)."""
    manager = _best_reader(workdir)
    if manager is None:
        return None
    try:
        found = restore_latest(manager, like, progress=False, note=note)
    except NoGoodCheckpointError as exc:
        if note is not None:
            note(f"{exc}; using the newest checkpoint instead")
        return None
    return None if found is None else (found[0], found[1])


def last_good(manager: ocp.CheckpointManager, workdir: Path) -> str:
    """Words for the newest checkpoint, for messages."""
    step = manager.latest_step()
    if step is None:
        return "no checkpoint was written yet"
    return f"the last good checkpoint is step {step} in {workdir / CHECKPOINT_DIR / str(step)}"
