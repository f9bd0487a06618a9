"""A run's working directory: resolved recipe, versions, metrics, orbax checkpoints.

    WORKDIR/recipe.yaml      the resolved recipe the run was started with
    WORKDIR/versions.json    package versions and the device
    WORKDIR/metrics.jsonl    one JSON object per log line
    WORKDIR/checkpoints/N/   orbax checkpoints, the two newest (written atomically by orbax):
                             the training state and the run's progress (early stopping)
    WORKDIR/best/N/          the checkpoint with the best validation metric (orbax's best_fn)
    WORKDIR/trainer.lock     held by the process training in WORKDIR (its PID and host inside)
    WORKDIR/damaged/         checkpoints a resume found unreadable, moved aside (never deleted)
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import yaml

from zoo import recipes
from zoo.errors import RunDirectoryError
from zoo.files import read_json_lines, write_atomically

RECIPE_FILE = "recipe.yaml"
VERSIONS_FILE = "versions.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
LOCK_FILE = "trainer.lock"
EVAL_FILE = "eval.json"
DAMAGED_DIR = "damaged"
PACKAGES = ("vae-zoo", "jax", "jaxlib", "flax", "optax", "distrax", "orbax-checkpoint", "numpy", "tensorflow-datasets")


def versions() -> dict[str, str]:
    """Versions of Python, the packages the numbers depend on, and the device."""
    from zoo.version import git_commit

    found = {"python": sys.version.split()[0], "platform": platform.platform(), "device": str(jax.devices()[0].device_kind),
             "vae-zoo-commit": git_commit() or "not a checkout"}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def comparable(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as plain YAML data, without the training budget (which a resume may change)."""
    plain = yaml.safe_load(recipes.dump(recipe))
    plain.pop("train", None)
    return plain


def first_difference(old: Any, new: Any, path: str = "") -> Optional[str]:
    """The first key path where two plain recipes differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if old == new else f"{path}: {old!r} in the run, {new!r} now"


def prepare(workdir: Path, recipe: Mapping[str, Any], *, resume: bool, write: bool = True, registry=None) -> None:
    """Create the workdir, or check that resuming continues the same model; never overwrite a run.

    With `write` False only the checks run (the other processes of a multi-host job).
    With `registry`, the saved recipe is validated again before the comparison, so
    an option added to a component since the run began counts at its default
    (a run saved without `free_bits` resumes under a zoo whose default is 0).
    """
    saved = workdir / RECIPE_FILE
    if saved.exists():
        if not resume:
            raise RunDirectoryError(
                f"{workdir} already holds a run; pass --resume to continue it, or choose another --workdir"
            )
        old = resolved_recipe(workdir, registry) if registry is not None else load_recipe(workdir)
        difference = first_difference(comparable(old), comparable(recipe))
        if difference:
            raise RunDirectoryError(f"cannot resume {workdir}: the recipe differs at {difference}")
    if not write:
        return
    workdir.mkdir(parents=True, exist_ok=True)
    saved.write_text(recipes.dump(recipe))
    (workdir / VERSIONS_FILE).write_text(json.dumps(versions(), indent=2) + "\n")


def tell(line: str) -> None:
    """Say something the user should know on stderr (a damaged checkpoint passed over, a lock taken over)."""
    print(f"zoo: {line}", file=sys.stderr, flush=True)


class WorkdirBusyError(RunDirectoryError):
    """Another process is training in this run directory."""


@contextlib.contextmanager
def trainer_lock(workdir: Path, note=None) -> Iterator[None]:
    """Hold WORKDIR/trainer.lock while training: a second trainer is refused, naming the holder.

    The lock is the kernel's (flock), so a holder that dies, even by kill -9,
    releases it; the PID and host it left in the file are then reported as
    taken over through `note` (a function taking one line).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    stream = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        stream.seek(0)
        holder = describe_holder(stream.read())
        stream.close()
        raise WorkdirBusyError(f"{workdir} is being trained by {holder}; wait for it to finish or stop it "
                               f"(Ctrl-C or kill -TERM checkpoints it) before training here") from None
    try:
        stream.seek(0)
        left = stream.read().strip()
        if left and note is not None:
            note(f"{path}: taking over the lock of {describe_holder(left)}, which no longer runs")
        stream.seek(0)
        stream.truncate()
        stream.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        stream.flush()
        yield
    finally:
        stream.seek(0)
        stream.truncate()  # an empty lock file: nobody to take over from
        stream.flush()
        fcntl.flock(stream, fcntl.LOCK_UN)
        stream.close()


def describe_holder(text: str) -> str:
    """'PID 123 on host h (since ...)' from a lock file's content."""
    try:
        holder = json.loads(text)
        return f"PID {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "another process"


def checkpoint_manager(workdir: Path) -> ocp.CheckpointManager:
    """Orbax manager keeping the two newest checkpoints."""
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    return ocp.CheckpointManager((workdir / CHECKPOINT_DIR).resolve(), options=options)


def best_checkpoint_manager(workdir: Path, metric: str = "elbo", higher_is_better: bool = True) -> ocp.CheckpointManager:
    """Orbax manager keeping the two checkpoints whose validation `metric` is best.

    A checkpoint is saved here only when it improves on the best, so the newest
    kept is the best; the one before it survives a resume that drops the newest
    (`drop_best_after`).
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True, best_fn=lambda metrics: metrics[metric],
                                           best_mode="max" if higher_is_better else "min",
                                           keep_checkpoints_without_metrics=False)
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


def drop_best_after(manager: ocp.CheckpointManager, step: int) -> None:
    """Forget best checkpoints taken after `step`: a resume from `step` redoes that training."""
    for later in [s for s in manager.all_steps() if s > step]:
        manager.delete(later)


class CheckpointDamaged(Exception):
    """One checkpoint cannot be read (truncated, emptied, garbled); an earlier one may still be good."""


class NoGoodCheckpointError(RunDirectoryError):
    """Every checkpoint of a directory is damaged."""


def stored_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """{leaf path: shape} of the state saved in one checkpoint directory, from orbax's metadata."""
    item = directory / "state" if (directory / "state").is_dir() else directory / "default"  # "default": the earlier format
    try:
        metadata = ocp.StandardCheckpointer().metadata(item.resolve())
        tree = getattr(metadata, "item_metadata", metadata)
        return {leaf_name(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    except Exception as exc:
        raise CheckpointDamaged(short(exc)) from exc


def leaf_name(path) -> str:
    """'params.encoder.layers.0.kernel': a pytree path with dict keys, attributes and indices alike."""
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def short(exc: BaseException) -> str:
    """One line naming an exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


def check_matches(directory: Path, like: Any) -> None:
    """Refuse a checkpoint whose arrays are not the model's: recipe.yaml no longer describes it."""
    stored = stored_shapes(directory)
    wanted = {leaf_name(path): tuple(np.shape(leaf)) for path, leaf in jax.tree_util.tree_leaves_with_path(like)}
    if not stored:
        raise CheckpointDamaged("orbax finds no arrays in it")
    for name in wanted:
        if name in stored and stored[name] != wanted[name]:
            raise RunDirectoryError(f"the checkpoint {directory} does not match the run's recipe.yaml: {name} is "
                                    f"{stored[name]} in the checkpoint, {wanted[name]} in the model recipe.yaml describes "
                                    "(was recipe.yaml edited?)")
    missing, extra = sorted(set(wanted) - set(stored)), sorted(set(stored) - set(wanted))
    differences = ([f"the model has {', '.join(missing[:3])} that the checkpoint lacks"] if missing else []) + \
        ([f"the checkpoint has {', '.join(extra[:3])} that the model lacks"] if extra else [])
    if differences:
        raise RunDirectoryError(f"the checkpoint {directory} does not match the run's recipe.yaml: {'; '.join(differences)} "
                                "(was recipe.yaml edited?)")


def restore(manager: ocp.CheckpointManager, step: int, like: Any, *, progress: bool = True) -> tuple[Any, dict[str, Any]]:
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
            raise CheckpointDamaged(short(composite_error)) from composite_error
    state = restored["state"]
    if not all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.inexact)):
        raise CheckpointDamaged("it holds non-finite numbers")
    return state, dict(restored["progress"] or {}) if progress else {}


def restore_newest_good(manager: ocp.CheckpointManager, like: Any, *, progress: bool = True, note=None,
                        set_aside: Optional[Path] = None) -> Optional[tuple[int, Any, dict[str, Any]]]:
    """(step, state, progress) of the newest checkpoint that reads; None when there is none.

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
                note(f"the checkpoint {bad} is damaged ({reason}); using step {step} of {manager.directory} instead"
                     + (f", and moving the damaged one to {set_aside}" if set_aside is not None else ""))
            if set_aside is not None:
                set_aside.mkdir(parents=True, exist_ok=True)
                os.replace(bad, set_aside / f"{bad.parent.name}-{bad.name}")
        if damaged and set_aside is not None:
            manager.reload()
        return step, state, saved
    if damaged:
        raise NoGoodCheckpointError("no readable checkpoint: " + "; ".join(f"{bad} ({reason})" for bad, reason in damaged))
    return None


def restore_latest(manager: ocp.CheckpointManager, like: Any, *, note=None,
                   set_aside: Optional[Path] = None) -> Optional[tuple[int, Any, dict[str, Any]]]:
    """(step, state, progress) of the newest good checkpoint, shaped like `like`; None when there is none."""
    return restore_newest_good(manager, like, note=note, set_aside=set_aside)


def _best_reader(workdir: Path) -> Optional[ocp.CheckpointManager]:
    if not (Path(workdir) / BEST_DIR).is_dir():
        return None
    return ocp.CheckpointManager((Path(workdir) / BEST_DIR).resolve(), options=ocp.CheckpointManagerOptions(create=False))


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
        found = restore_newest_good(manager, like, progress=False, note=note)
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


def append_metrics(workdir: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line to the run's metrics."""
    with naming_write_errors(f"{workdir / METRICS_FILE}"), open(workdir / METRICS_FILE, "a") as stream:
        stream.write(json.dumps(record) + "\n")


@contextlib.contextmanager
def naming_write_errors(what: str) -> Iterator[None]:
    """A failed write (a full disk, a lost mount) as one line naming what was being written."""
    try:
        yield
    except OSError as exc:
        raise RunDirectoryError(f"cannot write {what}: {exc.strerror or exc}; what was written before is intact, "
                                "free the space and continue with --resume") from None


def read_metrics(workdir: Path) -> list[dict[str, Any]]:
    """Every metrics record of a run (a torn last line left out)."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    return read_json_lines(path)


def truncate_metrics(workdir: Path, step: int) -> None:
    """Keep only the records up to `step`: what a killed run logged after its checkpoint, and a torn
    last line, go. Written to a temporary file and renamed, so a kill meanwhile loses nothing."""
    kept = [r for r in read_metrics(workdir) if r.get("step", 0) <= step]
    with naming_write_errors(f"{Path(workdir) / METRICS_FILE}"):
        write_atomically(Path(workdir) / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))


def record_evaluation(workdir: Path, result: Mapping[str, Any]) -> dict[str, Any]:
    """Add one evaluation to WORKDIR/eval.json, keyed by split and number of importance samples K:
    {"test": {"5000": {...}, "100": {...}}}. An evaluation with another split or K keeps the others;
    the same split and K replace the earlier one. Returns the whole file's content."""
    path = Path(workdir) / EVAL_FILE
    kept: dict[str, Any] = {}
    if path.exists():
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            kept = {}  # a torn file: the evaluations in it are redone by asking again
        if "split" in kept:  # one evaluation, as eval.json was before it was keyed
            kept = {kept["split"]: {str(kept.get("num_importance_samples", 0)): kept}}
    kept.setdefault(result["split"], {})[str(result.get("num_importance_samples", 0))] = dict(result)
    with naming_write_errors(str(path)):
        write_atomically(path, json.dumps(kept, indent=2) + "\n")
    return kept


def progress_bar(total: int, initial: int, *, enabled: bool):
    """A tqdm bar showing loss and ELBO (silent when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def load_recipe(workdir: Path) -> dict[str, Any]:
    """The resolved recipe a run was trained with, or a clear error if WORKDIR holds no run."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise RunDirectoryError(f"{workdir}: no such run directory")
    saved = workdir / RECIPE_FILE
    if not saved.exists():
        raise RunDirectoryError(f"{workdir} holds no run (no {RECIPE_FILE}); train one with `zoo train VARIANT --workdir {workdir}`")
    recipe = recipes.read_yaml(saved)
    if not isinstance(recipe, dict):
        raise RunDirectoryError(f"{saved}: expected a recipe mapping, got {type(recipe).__name__}; the run directory is damaged")
    return recipe


def resolved_recipe(workdir: Path, registry) -> dict[str, Any]:
    """A run's saved recipe, validated again (sequences as tuples) against today's registry."""
    plain = load_recipe(workdir)
    name = plain.pop("variant", Path(workdir).name)
    return recipes.validate(plain, registry, name=name, source=str(Path(workdir) / RECIPE_FILE))
