"""The Python API, for notebooks and scripts; the `zoo` command is a thin layer over it.

    import zoo
    run = zoo.train("vae_mlp", workdir="runs/a", overrides={"train.steps": 2000})
    run = zoo.load("runs/a")
    x = run.sample(16, seed=0)
    model = zoo.build("cvae_sohn")
    rows = zoo.compare(["runs/a", "runs/b"])

Every function takes `registry=` (default: every installed plugin) and
`recipes=` (recipe files read after registry.yaml), as the command's
`--recipes` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, Union

from zoo.errors import RecipeError, RunDirectoryError, overrides_named

if TYPE_CHECKING:  # loaded on first use: `import zoo` stays light
    from zoo.evaluation.trained_run import Run

PathLike = Union[str, Path]
Overrides = Union[Mapping[str, Any], Sequence[str], None]


# How errors name the overrides given to zoo.train and zoo.build (the CLI's are `--set`).
PYTHON_OVERRIDES = "overrides="


def _registry(registry=None):
    from zoo.core.plugin_manager import default_registry

    return registry if registry is not None else default_registry()


def recipe_book(recipes: Iterable[PathLike] = ()):
    """registry.yaml, then the user's recipe files."""
    from zoo.core.recipes import RecipeBook, default_registry_path

    return RecipeBook([default_registry_path(), *map(Path, recipes)])


def assignments(overrides: Overrides) -> list[str]:
    """`--set` assignments from {"train.steps": 2000} or ["train.steps=2000"]."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]  # JSON is YAML
    if isinstance(overrides, str):
        raise RecipeError(f"overrides: expected a mapping or a list of 'key.path=value', got the string {overrides!r}")
    return list(overrides)


def build(
    variant: str,
    overrides: Overrides = None,
    *,
    recipes: Iterable[PathLike] = (),
    registry=None,
    data_dir: Optional[str] = None,
):
    """An untrained model (a flax NNX module) from a variant's recipe, checked as training checks it."""
    from zoo.core.assembly import assemble

    registry = _registry(registry)
    with overrides_named(PYTHON_OVERRIDES):
        recipe = recipe_book(recipes).resolve(variant, registry, assignments(overrides))
    return assemble(recipe, registry, data_dir).model


def training_recipe(
    variant: Optional[str],
    workdir: Optional[PathLike],
    overrides: Overrides,
    resume: Union[bool, PathLike],
    book,
    registry,
) -> tuple[dict[str, Any], Path]:
    """(resolved recipe, workdir) of a `train` call.

    Resuming a run reads the run's own recipe (its variant and every option it
    was started with), and applies `overrides` on top; training settings may
    change (said and recorded by `runs.prepare`), the model may not.
    """
    from zoo.training import runs
    from zoo.core.recipes import with_overrides

    if not isinstance(resume, bool):  # resume=RUN names the run directory
        if workdir is not None and Path(workdir) != Path(resume):
            raise RunDirectoryError(f"--resume {resume} and --workdir {workdir} name different run directories")
        workdir = resume
    if workdir is None:
        if variant is None:
            raise RecipeError("give a VARIANT to train (or --resume RUN to continue a run)")
        workdir = Path("runs") / variant
    workdir = Path(workdir)
    if resume is not False and (workdir / runs.RECIPE_FILE).exists():
        saved = runs.resolved_recipe(workdir, registry)
        if variant is not None and variant != saved["variant"]:
            raise RunDirectoryError(f"{workdir} holds a run of {saved['variant']!r}, not {variant!r}")
        return with_overrides(
            saved, registry, assignments(overrides), name=saved["variant"], source=str(workdir / runs.RECIPE_FILE)
        ), workdir
    if variant is None:
        raise RunDirectoryError(
            f"{workdir} holds no run to resume (no {runs.RECIPE_FILE}); give a VARIANT to start one"
        )
    return book.resolve(variant, registry, assignments(overrides)), workdir


def check_run_directory(
    variant: Optional[str],
    workdir: Optional[PathLike],
    overrides: Overrides,
    resume: Union[bool, PathLike],
    recipes: Iterable[PathLike] = (),
    registry=None,
) -> None:
    """What `train_in` checks of its run directory (a run there is not overwritten; a resumed one
    keeps its model), and nothing else: no JAX, so a multi-process job runs it before joining."""
    from zoo.training import runs

    registry = _registry(registry)
    recipe, workdir = training_recipe(variant, workdir, overrides, resume, recipe_book(recipes), registry)
    runs.prepare(Path(workdir), recipe, resume=resume is not False, write=False, registry=registry)


def train_in(
    variant: Optional[str] = None,
    workdir: Optional[PathLike] = None,
    *,
    overrides: Overrides = None,
    resume: Union[bool, PathLike] = False,
    recipes: Iterable[PathLike] = (),
    registry=None,
    data_dir: Optional[str] = None,
    progress: bool = True,
    max_seconds: Optional[float] = None,
) -> dict[str, Any]:
    """Train (or resume) a run; returns the training summary (what `zoo train` prints)."""
    from zoo.training.experiment import train_and_evaluate

    registry = _registry(registry)
    recipe, workdir = training_recipe(variant, workdir, overrides, resume, recipe_book(recipes), registry)
    return train_and_evaluate(
        recipe,
        workdir,
        registry,
        resume=resume is not False,
        progress=progress,
        data_dir=data_dir,
        max_seconds=max_seconds,
    )


def train(
    variant: Optional[str] = None,
    workdir: Optional[PathLike] = None,
    *,
    overrides: Overrides = None,
    resume: Union[bool, PathLike] = False,
    recipes: Iterable[PathLike] = (),
    registry=None,
    data_dir: Optional[str] = None,
    progress: bool = True,
    max_seconds: Optional[float] = None,
    data: Any = None,
) -> "Run":
    """Train a variant in `workdir` (default runs/VARIANT) and return the trained `Run` at its
    best checkpoint. `resume=True` (or `resume="runs/a"`) continues a run from its newest
    checkpoint with its own recipe; `overrides` then may change training settings only.
    Ctrl-C checkpoints the step reached and raises `zoo.training.signals.TrainingInterrupted`.

    `data`: your own images instead of the recipe's dataset, an array (N, H, W, C) or (N, H, W),
    uint8 in [0, 255] or floats in [0, 1], or a dict of the keys of the `arrays` dataset (train,
    validation, test, train_labels, ..., class_names). They are kept in the run directory as
    data.npz, which the run's recipe names, so `zoo.load` and every command read them again."""
    from zoo.evaluation.trained_run import Run

    registry = _registry(registry)
    with overrides_named(PYTHON_OVERRIDES):
        train_with = lambda overrides: train_in(
            variant,
            workdir,
            overrides=overrides,
            resume=resume,
            recipes=recipes,
            registry=registry,
            data_dir=data_dir,
            progress=progress,
            max_seconds=max_seconds,
        )
        summary = (
            train_with(overrides) if data is None else train_on_arrays(train_with, data, variant, workdir, overrides)
        )
    run = Run.load(summary["workdir"], registry, data_dir)
    run.summary = summary
    return run


DATA_FILE = "data.npz"


def train_on_arrays(train_with, data: Any, variant: Optional[str], workdir: Optional[PathLike], overrides: Overrides):
    """`train_with(overrides)` on `data` written to WORKDIR/data.npz, the recipe's dataset the
    `arrays` dataset reading it; a refused start removes what it wrote."""
    import shutil

    from zoo.core.data import write_data_file

    if variant is None:
        raise RecipeError("data= starts a new run: give the VARIANT to train on it")
    workdir = Path(workdir) if workdir is not None else Path("runs") / variant
    if workdir.exists() and any(workdir.iterdir()):
        raise RunDirectoryError(f"{workdir} is not empty; data= starts a new run, choose another workdir")
    created = not workdir.exists()
    path = write_data_file(data, workdir.resolve() / DATA_FILE)
    dataset = {"dataset": {"name": "arrays", "path": str(path)}}
    try:
        return train_with([*assignments(dataset), *assignments(overrides)])
    except Exception:
        if not (workdir / "recipe.yaml").exists():  # refused before the run began: leave nothing behind
            if created:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def load(workdir: PathLike, *, checkpoint: str = "best", registry=None, data_dir: Optional[str] = None) -> "Run":
    """A trained run: its recipe, model, metrics and the best (or newest) checkpoint's parameters."""
    from zoo.evaluation.trained_run import Run

    return Run.load(workdir, _registry(registry), data_dir, checkpoint)


def compare(paths: Iterable[PathLike]) -> list[dict[str, Any]]:
    """The table `zoo compare` prints, as rows: one per (dataset, task, variant), with the
    number of seeds and each column's mean and 95% interval. `paths` are results.jsonl
    files of `zoo bench`, directories holding one, or run directories (their eval.json)."""
    from zoo.evaluation.report import table_rows
    from zoo.evaluation.results import read_results

    return table_rows(read_results(map(Path, paths)))
