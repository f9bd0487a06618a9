"""A run's working directory: resolved recipe, versions, metrics, orbax checkpoints.

    WORKDIR/recipe.yaml      the resolved recipe the run was started with
    WORKDIR/versions.json    package versions and the device
    WORKDIR/metrics.jsonl    one JSON object per log line
    WORKDIR/checkpoints/N/   orbax checkpoints, the two newest (written atomically by orbax):
                             the training state and the run's progress (early stopping)
    WORKDIR/best/N/          the checkpoint with the best validation metric (orbax's best_fn)
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import orbax.checkpoint as ocp
import yaml

from zoo import recipes
from zoo.errors import RunDirectoryError

RECIPE_FILE = "recipe.yaml"
VERSIONS_FILE = "versions.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
PACKAGES = ("vae-zoo", "jax", "jaxlib", "flax", "optax", "distrax", "orbax-checkpoint", "numpy", "tensorflow-datasets")


def versions() -> dict[str, str]:
    """Versions of Python, the packages the numbers depend on, and the device."""
    found = {"python": sys.version.split()[0], "platform": platform.platform(), "device": str(jax.devices()[0].device_kind)}
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
    manager.save(step, args=ocp.args.Composite(**items))
    manager.wait_until_finished()


def save_best(manager: ocp.CheckpointManager, step: int, state: Any, metrics: Mapping[str, float]) -> None:
    """Keep `state` as the best checkpoint."""
    if not manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), metrics=dict(metrics)):
        raise RunDirectoryError(f"orbax did not save the best checkpoint of step {step} in {manager.directory}")
    manager.wait_until_finished()


def drop_best_after(manager: ocp.CheckpointManager, step: int) -> None:
    """Forget best checkpoints taken after `step`: a resume from `step` redoes that training."""
    for later in [s for s in manager.all_steps() if s > step]:
        manager.delete(later)


def restore(manager: ocp.CheckpointManager, step: int, like: Any, *, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """(state, progress) of the checkpoint at `step`, the state shaped like `like`."""
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
            raise RunDirectoryError(f"cannot read the checkpoint of step {step} in {manager.directory}: "
                                    f"{type(composite_error).__name__}: {str(composite_error).splitlines()[0][:200]}") from composite_error
    return restored["state"], dict(restored["progress"] or {}) if progress else {}


def restore_latest(manager: ocp.CheckpointManager, like: Any) -> Optional[tuple[int, Any, dict[str, Any]]]:
    """(step, state, progress) of the newest checkpoint, shaped like `like`; None when there is none."""
    step = manager.latest_step()
    if step is None:
        return None
    state, progress = restore(manager, step, like)
    return step, state, progress


def _best_reader(workdir: Path) -> Optional[ocp.CheckpointManager]:
    if not (Path(workdir) / BEST_DIR).is_dir():
        return None
    return ocp.CheckpointManager((Path(workdir) / BEST_DIR).resolve(), options=ocp.CheckpointManagerOptions(create=False))


def restore_best_step(workdir: Path) -> Optional[int]:
    """The step of the run's best checkpoint; None when it kept none."""
    manager = _best_reader(workdir)
    return None if manager is None else manager.latest_step()


def restore_best(workdir: Path, like: Any) -> Optional[tuple[int, Any]]:
    """(step, state) of the run's best checkpoint; None when it kept none."""
    step = restore_best_step(workdir)
    if step is None:
        return None
    return step, restore(_best_reader(workdir), step, like, progress=False)[0]


def last_good(manager: ocp.CheckpointManager, workdir: Path) -> str:
    """Words for the newest checkpoint, for messages."""
    step = manager.latest_step()
    if step is None:
        return "no checkpoint was written yet"
    return f"the last good checkpoint is step {step} in {workdir / CHECKPOINT_DIR / str(step)}"


def append_metrics(workdir: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line to the run's metrics."""
    with open(workdir / METRICS_FILE, "a") as stream:
        stream.write(json.dumps(record) + "\n")


def read_metrics(workdir: Path) -> list[dict[str, Any]]:
    """Every metrics record of a run."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(workdir: Path, step: int) -> None:
    """Drop records logged after `step` (a killed run logged them, then lost their state)."""
    kept = [r for r in read_metrics(workdir) if r.get("step", 0) <= step]
    (workdir / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in kept))


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
