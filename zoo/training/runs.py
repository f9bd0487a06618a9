"""A run's working directory: resolved recipe, versions, metrics, orbax checkpoints.

WORKDIR/recipe.yaml      the resolved recipe the run trains with
WORKDIR/recipe_history.jsonl   training settings changed on resume, with the recipe before
WORKDIR/versions.json    package versions, the device, and the plugin package of each component
WORKDIR/metrics.jsonl    one JSON object per log line
WORKDIR/eval.json        evaluations, by split and number of importance samples
WORKDIR/trainer.lock     held by the process training in WORKDIR (its PID and host inside)
WORKDIR/tensorboard/     TensorBoard event files (zoo/training/tensorboard.py)
WORKDIR/checkpoints/, best/, damaged/   orbax checkpoints (zoo/training/checkpoints.py)
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
import numpy as np

from zoo.core import recipes
from zoo.errors import RecipeError, RunDirectoryError, UnknownComponentError
from zoo.files import held_exclusively, naming_write_errors, read_json_lines, write_atomically

RECIPE_FILE = "recipe.yaml"
VERSIONS_FILE = "versions.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "trainer.lock"
CLAIM_FILE = "bench.claim"
EVAL_FILE = "eval.json"
HISTORY_FILE = "recipe_history.jsonl"
PACKAGES = ("vae-zoo", "jax", "jaxlib", "flax", "optax", "distrax", "orbax-checkpoint", "numpy", "tensorflow-datasets")


def versions() -> dict[str, str]:
    """Versions of Python, the packages the numbers depend on, and the device."""
    from zoo.version import git_commit

    found = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(jax.devices()[0].device_kind),
        "vae-zoo-commit": git_commit() or "not a checkout",
    }
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def plugin_packages(recipe: Mapping[str, Any], registry) -> dict[str, dict[str, str]]:
    """Each component the recipe builds, "KIND NAME", with the plugin that registered it and that
    plugin's installed package and version: what a machine needs installed to load the run."""
    used = {}
    for kind in recipes.COMPONENT_KEYS:
        spec = recipe.get(kind)
        if not isinstance(spec, Mapping) or "name" not in spec:
            continue  # no condition: an unconditional model
        component = registry.get(kind, spec["name"])
        package = registry.package_of(component.plugin)
        used[f"{kind} {spec['name']}"] = {
            "plugin": component.plugin,
            "package": package[0] if package else "not an installed package",
            "version": package[1] if package else "",
        }
    return used


def comparable(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as plain YAML data, without the training budget (which a resume may change)."""
    plain = recipes.load_yaml(recipes.dump(recipe))
    plain.pop("train", None)
    return plain


def differences(old: Any, new: Any, path: str = "") -> Iterator[str]:
    """Every key path where two plain recipes differ, with both values, in the old one's key order."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            yield from differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
    elif old != new:
        yield f"{path}: {old!r} in the run, {new!r} now"


def first_difference(old: Any, new: Any, path: str = "") -> Optional[str]:
    """The first key path where two plain recipes differ, with both values."""
    return next(differences(old, new, path), None)


def prepare(workdir: Path, recipe: Mapping[str, Any], *, resume: bool, write: bool = True, registry=None) -> None:
    """Create the workdir, or check that resuming continues the same model; never overwrite a run.

    With `write` False only the checks run (the other processes of a multi-host job).
    With `registry`, the saved recipe is validated again before the comparison, so
    an option added to a component since the run began counts at its default
    (a run saved without `free_bits` resumes under a zoo whose default is 0).
    """
    saved = workdir / RECIPE_FILE
    changed: list[str] = []
    if saved.exists():
        if not resume:
            raise RunDirectoryError(
                f"{workdir} already holds a run; pass --resume to continue it, or choose another --workdir"
            )
        old = resolved_recipe(workdir, registry) if registry is not None else load_recipe(workdir)
        difference = first_difference(comparable(old), comparable(recipe))
        if difference:
            raise RunDirectoryError(
                f"cannot resume {workdir}: the recipe differs at {difference} "
                "(a resume may change train.* settings, not the model)"
            )
        plain = recipes.load_yaml(recipes.dump(recipe))
        changed = list(differences(recipes.load_yaml(recipes.dump(old)).get("train"), plain.get("train"), "train"))
    if not write:
        return
    workdir.mkdir(parents=True, exist_ok=True)
    if changed:  # the recipe's training part changes on resume: said, and kept in the run's history
        record_recipe_change(workdir, changed)
    saved.write_text(recipes.dump(recipe))
    recorded: dict[str, Any] = dict(versions())
    if registry is not None:
        recorded["plugins"] = plugin_packages(recipe, registry)
    (workdir / VERSIONS_FILE).write_text(json.dumps(recorded, indent=2) + "\n")


def record_recipe_change(workdir: Path, changed: list[str]) -> None:
    """Say on stderr which training settings a resume changes, and append them (with the recipe
    as it was) to WORKDIR/recipe_history.jsonl before recipe.yaml is rewritten."""
    tell(
        f"resuming {workdir} with changed training settings: {'; '.join(changed)} (recorded in {workdir / HISTORY_FILE})"
    )
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "changed": changed,
        "previous_recipe": recipes.load_yaml((workdir / RECIPE_FILE).read_text(encoding="utf-8")),
    }
    with (
        naming_write_errors(str(workdir / HISTORY_FILE)),
        open(workdir / HISTORY_FILE, "a", encoding="utf-8") as stream,
    ):
        stream.write(json.dumps(entry) + "\n")


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
        raise WorkdirBusyError(
            f"{workdir} is being trained by {holder}; wait for it to finish or stop it "
            f"(Ctrl-C or kill -TERM checkpoints it) before training here"
        ) from None
    try:
        stream.seek(0)
        left = stream.read().strip()
        if left and note is not None:
            note(f"{path}: taking over the lock of {describe_holder(left)}, which no longer runs")
        stream.seek(0)
        stream.truncate()
        stream.write(
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            )
        )
        stream.flush()
        yield
    finally:
        stream.seek(0)
        stream.truncate()  # an empty lock file: nobody to take over from
        stream.flush()
        fcntl.flock(stream, fcntl.LOCK_UN)
        stream.close()


@contextlib.contextmanager
def bench_claim(workdir: Path) -> Iterator[bool]:
    """Claim WORKDIR for one `zoo bench` process from its training to its result: yields True when
    this process holds the claim, False when another does (it is not waited for).

    Several bench processes sharing one --out so take the runs in turn, each the
    next that nobody else has: the trainer lock alone would leave the gap between
    the end of training and the result, when another process would evaluate the
    same run again. The kernel's lock (flock): a holder that dies releases it."""
    workdir.mkdir(parents=True, exist_ok=True)
    with held_exclusively(workdir / CLAIM_FILE, wait=False) as ours:
        yield ours


def describe_holder(text: str) -> str:
    """'PID 123 on host h (since ...)' from a lock file's content."""
    try:
        holder = json.loads(text)
        return f"PID {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "another process"


def append_metrics(workdir: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line to the run's metrics."""
    with naming_write_errors(f"{workdir / METRICS_FILE}"), open(workdir / METRICS_FILE, "a") as stream:
        stream.write(json.dumps(record) + "\n")


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


def read_evaluations(workdir: Path) -> dict[str, Any]:
    """WORKDIR/eval.json: {split: {K: evaluation}}; empty when there is none. A torn file counts as
    none (its evaluations are redone by asking again); one evaluation, as eval.json was before it
    was keyed, is keyed by its split and K."""
    path = Path(workdir) / EVAL_FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if "split" in kept:
        kept = {kept["split"]: {str(kept.get("num_importance_samples", 0)): kept}}
    return kept


def record_evaluation(workdir: Path, result: Mapping[str, Any]) -> dict[str, Any]:
    """Add one evaluation to WORKDIR/eval.json, keyed by split and number of importance samples K:
    {"test": {"5000": {...}, "100": {...}}}. An evaluation with another split or K keeps the others;
    the same split and K replace the earlier one. Returns the whole file's content."""
    path = Path(workdir) / EVAL_FILE
    kept = read_evaluations(workdir)
    kept.setdefault(result["split"], {})[str(result.get("num_importance_samples", 0))] = dict(result)
    with naming_write_errors(str(path)):
        write_atomically(path, json.dumps(kept, indent=2) + "\n")
    return kept


def seconds_per_epoch(workdir: Path, steps_per_epoch: Optional[float] = None) -> float:
    """Training time per epoch from the logged step rates (the first chunk includes compilation);
    the epoch's length in steps from the log itself when not given."""
    records = [r for r in read_metrics(workdir) if r.get("split") == "train" and r.get("steps_per_second")]
    if not records:
        return float("nan")
    if steps_per_epoch is None:
        last = records[-1]
        steps_per_epoch = last["step"] / last["epoch"] if last.get("epoch") else float("nan")
    steps = np.diff([0] + [r["step"] for r in records])
    seconds = float(np.sum(steps / np.array([r["steps_per_second"] for r in records])))
    return seconds / float(np.sum(steps)) * steps_per_epoch


def load_recipe(workdir: Path) -> dict[str, Any]:
    """The resolved recipe a run was trained with, or a clear error if WORKDIR holds no run."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise RunDirectoryError(f"{workdir}: no such run directory")
    saved = workdir / RECIPE_FILE
    if not saved.exists():
        raise RunDirectoryError(
            f"{workdir} holds no run (no {RECIPE_FILE}); train one with `zoo train VARIANT --workdir {workdir}`"
        )
    recipe = recipes.read_yaml(saved)
    if not isinstance(recipe, dict):
        raise RunDirectoryError(
            f"{saved}: expected a recipe mapping, got {type(recipe).__name__}; the run directory is damaged"
        )
    return recipe


def resolved_recipe(workdir: Path, registry) -> dict[str, Any]:
    """A run's saved recipe, validated again (sequences as tuples) against today's registry."""
    plain = load_recipe(workdir)
    name = plain.pop("variant", Path(workdir).name)
    try:
        return recipes.validate(plain, registry, name=name, source=str(Path(workdir) / RECIPE_FILE))
    except (UnknownComponentError, RecipeError) as exc:  # validation names the key of an unknown name
        missing = missing_plugin_package(Path(workdir), registry)
        if missing is None:
            raise
        raise UnknownComponentError(f"{missing} ({exc})") from exc


def missing_plugin_package(workdir: Path, registry) -> Optional[str]:
    """What to install to load a run whose component is not registered here, from the plugin
    packages its versions.json records; None when it records none (a run of an older zoo)."""
    try:
        used = json.loads((workdir / VERSIONS_FILE).read_text(encoding="utf-8")).get("plugins") or {}
    except (OSError, ValueError, AttributeError):
        return None
    for component, source in used.items():
        kind, _, name = component.partition(" ")
        if not isinstance(source, dict) or not source.get("version"):
            continue  # a component of no installed package: nothing to name
        if kind in recipes.COMPONENT_KEYS and name not in registry.names(kind):
            requirement = f"{source['package']}=={source['version']}"
            return (
                f"{workdir} was trained with {kind} {name!r} of plugin {source['plugin']!r} from the package "
                f"{source['package']} {source['version']}, which is not installed here: pip install '{requirement}'"
            )
    return None
