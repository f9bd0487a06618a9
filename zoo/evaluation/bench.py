"""Suites: variants x datasets x tasks x seeds under one budget and one evaluation.

A suite is a YAML file: a path, or the name of one shipped in zoo/suites/ (package
data). `run_suite` trains and evaluates every run in its own workdir; a run that finished wrote
`result.json` and is skipped when the suite is run again, a run that was
killed resumes from its checkpoint. Results go to `results.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml
from flax import nnx

from zoo.evaluation import classifier
from zoo.training import runs
from zoo.errors import RecipeError, TrainingDivergedError, UnknownComponentError
from zoo.files import held_exclusively, read_json_lines, write_atomically
from zoo.package_data import package_path
from zoo.progress import duration
from zoo.config import SuiteBudget, SuiteEvaluation, SuiteFile
from zoo.core.recipes import RecipeBook, dump, read_yaml, validate_dataclass
from zoo.core.registry import Registry, unknown_name_message

UNCONDITIONAL = "unconditional"
SUITES_DIR = package_path("suites")  # the shipped suites, found in an installed wheel too
RESULTS_LOCK = ".results.lock"  # beside results.jsonl: held while it is rebuilt (write_results)


@dataclasses.dataclass(frozen=True)
class Suite:
    """A parsed, checked suite file (its keys: zoo.config.SuiteFile)."""

    name: str
    path: str
    variants: tuple[str, ...]
    datasets: tuple[Optional[dict], ...]
    tasks: tuple[Any, ...]
    seeds: tuple[int, ...]
    variant_seeds: dict[str, tuple[int, ...]]
    budget: SuiteBudget
    overrides: tuple[str, ...]
    evaluation: SuiteEvaluation
    published: tuple[dict, ...]
    description: str = ""


def suite_path(name_or_path: str) -> Path:
    """A suite file: a path, or the name of a shipped suite (zoo/suites/NAME.yaml)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
    if name_or_path not in known:
        raise UnknownComponentError(unknown_name_message("suite", name_or_path, known))
    return SUITES_DIR / f"{name_or_path}.yaml"


def load_suite(name_or_path: str, book: RecipeBook) -> Suite:
    """Read and check a suite, against zoo.config.SuiteFile as recipes are checked against their
    dataclasses, then against the recipe book; every error names the file and the key."""
    path = suite_path(name_or_path)
    where = str(path)

    def fail(key: str, problem: str) -> RecipeError:
        return RecipeError(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")

    raw = read_yaml(path)
    if not isinstance(raw, Mapping):
        raise fail("", f"expected a mapping of suite keys, got {type(raw).__name__}")
    keys = validate_dataclass(SuiteFile, raw, "", fail)
    check_suite(keys, book, fail)
    suite = Suite(
        keys["name"] or path.stem,
        where,
        tuple(keys["variants"]),
        tuple(component_spec(d, f"datasets[{i}]", fail) for i, d in enumerate(keys["datasets"])) or (None,),
        tuple(task_spec(t, f"tasks[{i}]", fail) for i, t in enumerate(keys["tasks"])) or (None,),
        tuple(keys["seeds"]) or (0,),
        {v: tuple(seeds) for v, seeds in keys["variant_seeds"].items()},
        SuiteBudget(**keys["budget"]),
        tuple(keys["set"]),
        SuiteEvaluation(**keys["eval"]),
        tuple(keys["published"]),
        keys["description"] or "",
    )
    named: dict[str, Run] = {}
    for run in expand(suite):  # a run name leaves out what the recipe decides and a dataset's options
        if named.setdefault(run.run_id, run) != run:
            raise RecipeError(
                f"{where}: two runs would share the directory runs/{run.run_id} ({named[run.run_id]} and {run}); "
                "give the datasets or tasks that differ only in their options as separate suites"
            )
    return suite


def check_suite(keys: Mapping[str, Any], book: RecipeBook, fail) -> None:
    """What a suite's schema cannot say: its variants exist, its keys agree with each other."""
    if not keys["variants"]:
        raise fail("variants", "expected at least one variant")
    for index, variant in enumerate(keys["variants"]):
        if variant not in book.names():
            raise fail(f"variants[{index}]", unknown_name_message("variant", variant, book.names()))
    for variant, seeds in keys["variant_seeds"].items():
        if variant not in keys["variants"]:
            raise fail(
                f"variant_seeds.{variant}",
                unknown_name_message("variant of this suite", str(variant), keys["variants"]),
            )
        if not seeds:
            raise fail(f"variant_seeds.{variant}", "expected at least one seed")
    if keys["budget"]["steps"] is not None and keys["budget"]["epochs"] is not None:
        raise fail("budget", "give exactly one of steps or epochs (or neither: each recipe's own train budget)")
    if not keys["eval"]["proposals"]:
        raise fail("eval.proposals", "expected a list of posterior and/or prior, got []")


def component_spec(value: Any, where: str, fail) -> dict:
    """A dataset or condition (task) spec, `name` or `{name: ..., **options}`, as a mapping."""
    checked = {"name": value} if isinstance(value, str) else dict(value)
    if "name" not in checked:
        raise fail(where, "missing 'name'")
    return checked


def task_spec(value: Any, where: str, fail) -> Any:
    """A task spec, or UNCONDITIONAL (no condition, whatever the recipe says)."""
    return UNCONDITIONAL if value == UNCONDITIONAL else component_spec(value, where, fail)


def task_label(task) -> str:
    """Words for a task: 'unconditional', 'onehot_label', 'visible_quadrants visible=[2]'."""
    if task is None:
        return "recipe"
    if task == UNCONDITIONAL:
        return task
    options = " ".join(f"{k}={list(v) if isinstance(v, (list, tuple)) else v}" for k, v in task.items() if k != "name")
    return f"{task['name']} {options}".strip()


def task_in_run_name(task) -> str:
    """A task as a run name writes it: its name, then each option's value, the option's key
    left out where its words are already the name's (visible_quadrants=2_3, not
    visible_quadrants_visible=_2_3_)."""
    if task == UNCONDITIONAL:
        return task
    name_words = set(task["name"].split("_"))
    text = task["name"]
    for key, value in task.items():
        if key == "name":
            continue
        shown = "_".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        text += f"={shown}" if set(key.split("_")) <= name_words else f"-{key}={shown}"
    return text


@dataclasses.dataclass(frozen=True)
class Run:
    """One cell of a suite: a variant on a dataset and task with one seed."""

    variant: str
    dataset: Optional[dict]
    task: Any
    seed: int

    @property
    def run_id(self) -> str:
        """variant[-dataset][-task]-seedN, no word twice: the parts the recipe itself decides are
        left out, and a task's option keys that repeat its name (task_in_run_name)."""
        parts = [self.variant]
        if self.dataset:
            parts.append(self.dataset["name"])
        if self.task is not None:
            parts.append(task_in_run_name(self.task))
        return safe_name("-".join(parts + [f"seed{self.seed}"]))

    def earlier_run_ids(self) -> list[str]:
        """The names earlier versions of the zoo gave this run's directory, so that a suite
        begun before a renaming resumes its runs rather than training them again."""
        dataset = [self.dataset["name"]] if self.dataset else []
        task = [task_label(self.task)] if self.task is not None else []
        names = [
            "-".join([self.variant, *dataset, *task, f"seed{self.seed}"]),  # the task's words in full
            f"{self.variant}-{dataset[0] if dataset else 'recipe'}-{task_label(self.task)}-seed{self.seed}",
        ]  # 'recipe' for each default
        return [name for name in dict.fromkeys(map(safe_name, names)) if name != self.run_id]

    def overrides(self, suite: Suite) -> list[str]:
        """The --set overrides that turn the variant's recipe into this run's."""
        sets = [f"train.seed={self.seed}"]
        if self.dataset is not None:
            sets.append("dataset=" + json.dumps(self.dataset))
        if self.task == UNCONDITIONAL:
            sets.append("condition=null")
        elif self.task is not None:
            sets.append("condition=" + json.dumps(self.task))
        if suite.budget.batch_size is not None:
            sets.append(f"train.batch_size={suite.budget.batch_size}")
        return sets + list(suite.overrides)


def safe_name(text: str) -> str:
    """A run name as a directory name: letters, digits and _ . = - only."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def run_dir(out: Path, run: Run) -> Path:
    """The run's directory in a suite's output: its name, or the one an earlier version of the
    zoo gave it where that directory exists (its result.json and checkpoints are used as they are)."""
    for name in run.earlier_run_ids():
        if (out / "runs" / name).is_dir() and not (out / "runs" / run.run_id).exists():
            return out / "runs" / name
    return out / "runs" / run.run_id


def expand(suite: Suite) -> list[Run]:
    """Every run of a suite, in a fixed order: every variant's first seed before any second seed."""
    seeds = {v: suite.variant_seeds.get(v, suite.seeds) for v in suite.variants}
    depth = max(len(s) for s in seeds.values())
    return [
        Run(v, d, t, seeds[v][i])
        for i in range(depth)
        for d in suite.datasets
        for t in suite.tasks
        for v in suite.variants
        if i < len(seeds[v])
    ]


def resolve_run(run: Run, suite: Suite, book: RecipeBook, registry: Registry, data_dir: Optional[str]) -> dict:
    """The run's recipe with the suite's budget as a number of steps."""
    if suite.budget.epochs is not None:  # passes over the training split, as a recipe's train.epochs
        return book.resolve(run.variant, registry, run.overrides(suite) + [f"train.epochs={suite.budget.epochs}"])
    recipe = book.resolve(run.variant, registry, run.overrides(suite))
    if suite.budget.steps is None:
        return recipe  # the recipe's own budget (train.steps or train.epochs, early stopping)
    steps = suite.budget.steps
    checkpoint_every = min(recipe["train"]["checkpoint_every"], steps)
    return book.resolve(
        run.variant,
        registry,
        run.overrides(suite)
        + [f"train.steps={steps}", "train.epochs=null", f"train.checkpoint_every={checkpoint_every}"],
    )


def run_suite(
    suite: Suite,
    out: Path,
    book: RecipeBook,
    registry: Registry,
    *,
    data_dir: Optional[str] = None,
    progress: bool = False,
    log=print,
    variants: Optional[list[str]] = None,
) -> list[dict]:
    """Run every unfinished run of a suite (of `variants` only, when given); returns all
    results of the suite found in `out` (finished earlier, by another process, or now).

    A run whose training diverges is said and left without a result, and the suite goes on
    with the others; at the end a TrainingDivergedError names every such run. A run that
    another process holds (another `zoo bench` sharing `out`, or a `zoo train` in its
    directory) is left to that process, and the suite goes on with the next."""
    out = Path(out)
    for variant in variants or ():
        if variant not in suite.variants:
            raise RecipeError(
                f"{suite.path}: --variants: " + unknown_name_message("variant of this suite", variant, suite.variants)
            )
    planned = [run for run in expand(suite) if not variants or run.variant in variants]
    if suite.evaluation.disentanglement:  # refused before anything is trained or written
        require_factors_of(
            [resolve_run(run, suite, book, registry, data_dir) for run in planned],
            registry,
            data_dir,
            f"{suite.path}: eval.disentanglement",
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.yaml").write_text(Path(suite.path).read_text(encoding="utf-8"), encoding="utf-8")
    diverged: list[str] = []
    left_to_others: list[str] = []  # runs another process held (another `zoo bench` sharing `out`, or `zoo train`)
    for number, run in enumerate(planned, 1):
        workdir = run_dir(out, run)
        tag = f"[{number}/{len(planned)}] {workdir.name}"
        if (workdir / "result.json").exists():
            log(f"{tag}: done earlier")
            continue
        with runs.bench_claim(workdir) as ours:
            if not ours:
                left_to_others.append(workdir.name)
                log(f"{tag}: another process is running it, left to that one")
                continue
            if (workdir / "result.json").exists():  # finished by another process since the check above
                log(f"{tag}: done earlier")
                continue
            log(f"{tag}: training{time_left(out, planned, number - 1)}")
            try:
                record = train_and_record(suite, run, workdir, book, registry, data_dir, out, progress)
            except TrainingDivergedError as error:  # one run's divergence is its result, not the suite's end
                diverged.append(f"{workdir.name} ({error})")
                log(f"{tag}: diverged, no result: {error}")
                continue
            except runs.WorkdirBusyError:  # a `zoo train` outside the bench holds it
                left_to_others.append(workdir.name)
                log(f"{tag}: another process is training it, left to that one")
                continue
        log(f"{tag}: done in {duration(record['wall_seconds'])}")
    if left_to_others:
        log(
            f"{len(left_to_others)} run(s) left to other processes: {', '.join(left_to_others)}; their results "
            f"join {out / 'results.jsonl'} as those finish them"
        )
    results = write_results(suite, out)
    if diverged:
        raise TrainingDivergedError(
            f"{len(diverged)} run(s) of suite {suite.name} diverged and have no result (the others' are in "
            f"{out / 'results.jsonl'}): {'; '.join(diverged)}"
        )
    return results


def adopt_recorded_results(suite: Suite, out: Path, recorded: Path, log=print) -> int:
    """Count the runs recorded in a results.jsonl written earlier (one committed to git, say)
    as finished: each becomes its run's result.json in `out`, so a suite begun on another
    machine goes on with only the runs nobody has finished. Returns how many were adopted.

    A run that already has a result in `out` keeps it; a record of another suite is refused,
    and a record of a run this suite no longer has is said and left out."""
    recorded = Path(recorded)
    if not recorded.is_file():
        raise RecipeError(f"{recorded}: no such results file (give a results.jsonl that zoo bench wrote)")
    planned = {run.run_id: run for run in expand(suite)}
    adopted = 0
    for number, record in enumerate(read_json_lines(recorded), 1):
        if not isinstance(record, dict) or not {"suite", "run"} <= record.keys():
            raise RecipeError(f"{recorded}: record {number} has no suite and run: not a results.jsonl of zoo bench")
        if record["suite"] != suite.name:
            raise RecipeError(
                f"{recorded}: record {number} is a result of suite {record['suite']!r}, not of {suite.name!r}"
            )
        run = planned.get(record["run"])
        if run is None:
            log(f"{recorded}: record {number} ({record['run']}) is not a run of {suite.name} now; left out")
            continue
        result_file = run_dir(out, run) / "result.json"
        if result_file.exists():
            continue
        result_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(result_file, json.dumps(record))
        adopted += 1
    return adopted


def time_left(out: Path, planned: list[Run], next_index: int) -> str:
    """', about T left for N runs', from the wall time of every run of the suite that has a result:
    those this process trained, and those trained earlier or by other processes sharing `out`
    (a second process, or a rerun after a stop, would otherwise have no estimate). '' before any."""
    timings = []
    for run in planned:
        try:
            timings.append(float(json.loads((run_dir(out, run) / "result.json").read_text())["wall_seconds"]))
        except (OSError, ValueError, KeyError, TypeError):  # not finished yet, or torn by a kill
            continue
    left = len([r for r in planned[next_index:] if not (run_dir(out, r) / "result.json").exists()])
    if not timings:
        return ""
    return f", about {duration(sum(timings) / len(timings) * left)} left for {left} runs"


def train_and_record(
    suite: Suite,
    run: Run,
    workdir: Path,
    book: RecipeBook,
    registry: Registry,
    data_dir: Optional[str],
    out: Path,
    progress: bool,
) -> dict:
    """Train (or resume) one run of the suite, evaluate it, and write its result.json and results.jsonl."""
    from zoo.training.experiment import train_and_evaluate

    recipe = resolve_run(run, suite, book, registry, data_dir)
    began = time.perf_counter()
    summary = train_and_evaluate(
        recipe,
        workdir,
        registry,
        resume=True,
        progress=progress,
        data_dir=data_dir,
        max_seconds=suite.budget.max_seconds,
    )
    record = evaluate_run(suite, run, recipe, workdir, registry, data_dir, out)
    record.update(
        wall_seconds=round(time.perf_counter() - began, 2),
        steps=summary["step"],  # training + evaluation
        epochs=summary["epochs"],
        best_step=summary["best_step"],
        best_epoch=summary["best_epoch"],
        stopped_early=bool(summary.get("stopped_early")),
        stopped_by_time_limit=bool(summary.get("stopped_by_time_limit")),
    )
    write_atomically(workdir / "result.json", json.dumps(record, indent=1) + "\n")  # whole or not at all
    write_results(suite, out)
    return record


def require_factors_of(recipes: list[dict], registry: Registry, data_dir: Optional[str], key: str) -> None:
    """Each distinct dataset of the recipes has ground-truth factors (the disentanglement metrics need them)."""
    from zoo.core.data import build_dataset
    from zoo.evaluation.disentanglement import require_factors

    one_per_dataset = {json.dumps(recipe["dataset"], sort_keys=True): recipe for recipe in recipes}
    for recipe in one_per_dataset.values():
        require_factors(build_dataset(recipe, registry, data_dir), key)


def write_results(suite: Suite, out: Path) -> list[dict]:
    """results.jsonl: every finished run of the suite in `out`, in suite order (rewritten atomically).

    Read and rewritten under a lock: two processes running parts of one suite into
    the same `out` (`--variants`) would otherwise each write what it had read, and
    the later write could drop a run the other had just finished."""
    with held_exclusively(out / RESULTS_LOCK):
        results = []
        for run in expand(suite):
            result_file = run_dir(out, run) / "result.json"
            if result_file.exists():
                results.append(json.loads(result_file.read_text()))
        write_atomically(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in results))
    return results


def evaluate_run(
    suite: Suite, run: Run, recipe: dict, workdir: Path, registry: Registry, data_dir: Optional[str], out: Path
) -> dict:
    """Every metric of a trained run at its best checkpoint (`zoo eval`'s evaluation, with the
    suite's settings), with what it was: recipe, versions, seed."""
    from zoo.evaluation import trained_run

    trained = trained_run.Run.load(workdir, registry, data_dir)
    settings = suite.evaluation
    evaluation = trained.evaluate(
        settings.split,
        settings.num_samples,
        limit=settings.limit,
        seed=run.seed,
        proposals=tuple(settings.proposals),
        devices=recipe["train"]["devices"],
        disentanglement=settings.disentanglement,
        dci_model=settings.dci_model,
    )
    experiment = trained.experiment
    for key in ("run", "variant", "step"):
        evaluation.pop(key)
    record = {
        "suite": suite.name,
        "run": workdir.name,
        "variant": run.variant,
        "dataset": experiment.dataset.name,
        "task": task_label(run.task if run.task is not None else (recipe["condition"] or UNCONDITIONAL)),
        "seed": run.seed,
        "evaluated_step": trained.step,
        **evaluation,
        "seconds_per_epoch": runs.seconds_per_epoch(
            workdir, len(experiment.dataset.train.images) // recipe["train"]["batch_size"]
        ),
        "recipe": yaml.safe_load(dump(recipe)),
        "versions": runs.versions(),
    }
    if getattr(experiment.condition, "class_conditional", False) and settings.accuracy_samples:
        record.update(
            classifier.sample_checks(
                experiment,
                nnx.merge(trained.graphdef, trained.params),
                out / "classifiers" / f"{experiment.dataset.name}.npz",
                settings.accuracy_samples,
                run.seed,
            )
        )
    return record
