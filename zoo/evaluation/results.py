"""Reading results: the lines of a bench's results.jsonl, or a run directory's newest
evaluation, each with the run directory it came from (what zoo.evaluation.report tabulates)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from zoo.errors import RunDirectoryError
from zoo.files import read_json_lines

RESULT_KEYS = ("suite", "run", "variant", "dataset", "task", "seed")


def results_file(path: Path) -> Path:
    """A results.jsonl, given as itself or as the directory `zoo bench --out` wrote it into."""
    return path / "results.jsonl" if path.is_dir() and (path / "results.jsonl").is_file() else path


def is_run_directory(path: Path) -> bool:
    from zoo.training.runs import RECIPE_FILE

    return path.is_dir() and (path / RECIPE_FILE).is_file()


def located_results(paths: Iterable[Path]) -> list[tuple[dict, Path]]:
    """(record, run directory) for every result: each line of a bench's results.jsonl (with its
    run under OUT/runs/), or a run directory's newest evaluation (run_record)."""
    located = []
    for path in map(Path, paths):
        if is_run_directory(path):
            located.append((run_record(path), path))
            continue
        path = results_file(path)
        if not path.is_file():
            raise RunDirectoryError(
                f"{path}: no such results file or run directory "
                "(give OUT/results.jsonl of zoo bench, its OUT, or a run directory of zoo train)"
            )
        for number, record in enumerate(read_json_lines(path), 1):
            missing = [key for key in RESULT_KEYS if key not in record]
            if missing:
                raise RunDirectoryError(
                    f"{path}: record {number} has no {', '.join(missing)}: expected the results.jsonl "
                    "that zoo bench writes (one JSON line per evaluated run), not a run's training log"
                )
            located.append((record, path.parent / "runs" / record["run"]))
    return located


def read_results(paths: Iterable[Path]) -> list[dict]:
    """Every result of one or more results.jsonl files (or bench output directories) and run directories."""
    return [record for record, _ in located_results(paths)]


def run_record(workdir: Path) -> dict:
    """A run directory as one result: its recipe, and its evaluation on the test split (another
    split when it has none) with the most importance samples, from eval.json."""
    from zoo.training import runs
    from zoo.evaluation.bench import task_label

    recipe = runs.load_recipe(workdir)
    evaluations = runs.read_evaluations(workdir)
    if not evaluations:
        found = "a damaged eval.json" if (workdir / runs.EVAL_FILE).exists() else f"no {runs.EVAL_FILE}"
        raise RunDirectoryError(f"{workdir} has not been evaluated ({found}); run `zoo eval {workdir}` first")
    split = "test" if "test" in evaluations else next(iter(evaluations))
    evaluation = evaluations[split][max(evaluations[split], key=int)]
    return {
        "suite": "runs",
        **evaluation,
        "run": str(workdir),
        "variant": recipe.get("variant", workdir.name),
        "dataset": (recipe.get("dataset") or {}).get("name", "?"),
        "task": task_label(recipe.get("condition") or "unconditional"),
        "seed": (recipe.get("train") or {}).get("seed", 0),
        "seconds_per_epoch": runs.seconds_per_epoch(workdir),
    }
