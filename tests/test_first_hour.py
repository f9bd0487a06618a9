"""What a new user meets in the first hour (issue 30, part 5): where `zoo --version` and the
argparse errors go, `--out` on every command that writes, --condition checked before the model is
loaded, the overrides named as the user gave them, no orbax notes from the Python API, what
--resume says, and estimates of the time left that do not count compilation."""

import json
import re
import shlex
from pathlib import Path

import pytest

import zoo
from tests import conftest
from zoo.cli.main import build_parser, main
from zoo.evaluation import bench
from zoo.evaluation.report import table
from zoo.evaluation.results import read_results
from zoo.evaluation.trained_run import Run
from zoo.progress import Progress
from zoo.training import runs
from zoo.version import describe

REPO = Path(__file__).resolve().parent.parent
TINY = [*conftest.TINY, "train.steps=20", "train.log_every=10"]  # the suite's small configuration: compiled once


def run_zoo(capsys, *args):
    """`zoo ARGS` in this process: (exit status, stdout, stderr); argparse's exits included."""
    try:
        status = main(list(map(str, args)))
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_version_goes_to_stdout(capsys):
    status, out, err = run_zoo(capsys, "--version")
    assert (status, out, err) == (0, describe() + "\n", "")
    assert out.startswith("vae-zoo ") or out.split()[0], out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("export-web", "runs/a", "--bogus", "x"),
            "zoo: error: export-web: unrecognized arguments: --bogus x (see zoo export-web --help)",
        ),
        (("train", "--bogus"), "zoo: error: train: unrecognized arguments: --bogus (see zoo train --help)"),
        (
            ("sample", "runs/a", "--per-row", "0"),
            "zoo: error: sample: argument --per-row: expected an integer in 1..100, got '0' (see zoo sample --help)",
        ),
        (("--bogus",), "zoo: error: the following arguments are required: COMMAND (see zoo --help)"),
    ],
)
def test_argparse_errors_name_the_subcommands_help_once(capsys, args, expected):
    status, out, err = run_zoo(capsys, *args)
    assert status == 2 and out == "", err
    assert err.splitlines() == [expected]


# Every built-in command that writes files, with what --out names there.
WRITERS = {
    "train": (["train", "vae_mlp", "--out", "somewhere"], "workdir"),
    "eval": (["eval", "runs/a", "--out", "somewhere/eval.json"], "out"),
    "sample": (["sample", "runs/a", "--out", "somewhere/s.png"], "out"),
    "plot": (["plot", "runs/a", "--out", "somewhere"], "out"),
    "bench": (["bench", "quick", "--out", "somewhere"], "out"),
    "compare": (["compare", "results.jsonl", "--out", "somewhere"], "report"),
    "export-web": (["export-web", "runs/a", "--out", "somewhere"], "out"),
}


@pytest.mark.parametrize("command", WRITERS)
def test_every_command_that_writes_takes_out(command):
    argv, destination = WRITERS[command]
    assert getattr(build_parser().parse_args(argv), destination).startswith("somewhere")


def test_the_built_in_commands_that_write_are_all_listed():
    """A new command that writes (it has an option or argument named like an output) joins WRITERS."""
    from zoo.cli.parser import subcommands

    for name, parser in subcommands(build_parser()).choices.items():
        flags = {flag for action in parser._actions for flag in action.option_strings}
        if flags & {"--out", "--workdir", "--report"}:
            assert name in WRITERS, name


def test_export_web_refuses_two_directories_and_none(capsys):
    status, _, err = run_zoo(capsys, "export-web", "runs/a", "one", "--out", "two")
    assert status == 2 and err.splitlines() == [
        "zoo: error: export-web: DIR one and --out two name two directories; give one"
    ]
    status, _, err = run_zoo(capsys, "export-web", "runs/a")
    assert status == 2 and "give the page's directory, as DIR or --out DIR" in err


@pytest.fixture(scope="module")
def cvae_recipe_only(tmp_path_factory, book, registry):
    """A run directory holding only a CVAE's recipe: enough to read a --condition, no checkpoint."""
    workdir = tmp_path_factory.mktemp("cvae") / "run"
    runs.prepare(workdir, book.resolve("cvae_mlp", registry, []), resume=False)
    return workdir


def test_sample_checks_the_condition_before_loading_the_model(cvae_recipe_only, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the condition was read")

    monkeypatch.setattr(Run, "load", refuse)
    status, out, err = run_zoo(capsys, "sample", cvae_recipe_only, "--condition", "x@y")
    lines = err.splitlines()
    assert status == 2 and out == "" and len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    assert "unknown class 'x'" in lines[0] and "AssertionError" not in err


def test_python_overrides_are_named_overrides_not_set(registry):
    with pytest.raises(zoo.ZooError, match=r"^overrides=: vae_mlp\.train\.steps: expected a positive number, got 0"):
        zoo.build("vae_mlp", {"train.steps": 0}, registry=registry)
    with pytest.raises(zoo.ZooError, match=r"^overrides= 'train\.steps': expected key\.path=value"):
        zoo.build("vae_mlp", ["train.steps"], registry=registry)


def test_cli_overrides_are_named_set(capsys):
    status, _, err = run_zoo(capsys, "show", "vae_mlp", "--set", "train.steps=0")
    assert status == 2 and err.startswith(
        "zoo: error: --set: vae_mlp.train.steps: expected a positive number, got 0"
    ), err


def test_the_python_api_prints_no_orbax_metadata_note_and_resume_says_its_step(tmp_path, registry, capsys, caplog):
    caplog.set_level("INFO")
    zoo.train("vae_mlp", tmp_path / "run", overrides=TINY, registry=registry, progress=False)
    zoo.load(tmp_path / "run", registry=registry)
    out, err = capsys.readouterr()
    assert "_CHECKPOINT_METADATA" not in out + err + caplog.text
    assert "Metadata file does not exist" not in out + err + caplog.text
    zoo.train(workdir=tmp_path / "run", resume=True, overrides={"train.steps": 30}, registry=registry, progress=False)
    err = capsys.readouterr().err
    assert f"zoo: resuming {tmp_path / 'run'} from step 20 (the newest training checkpoint)" in err.splitlines()
    assert "_CHECKPOINT_METADATA" not in err + caplog.text


def test_orbax_keeps_its_other_warnings(caplog):
    import logging

    import zoo.training.checkpoints  # noqa: F401  (adds the filter)

    caplog.set_level("WARNING", logger="absl")  # the CLI's tests in this process quiet absl to errors
    logging.getLogger("absl").warning("something else went wrong")
    logging.getLogger("absl").warning("Metadata file does not exist: /x/_CHECKPOINT_METADATA")
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong"]


class ScriptedClock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_time_left_leaves_out_the_compiling_first_interval(capsys):
    """The issue's run: 1500 steps, logged every 100; the first 100 took 8 s (compiling), each
    100 after 0.93 s. It said '100/1500 steps (7%), 1 min 41 s left' for 13 s that were left."""
    clock = ScriptedClock()
    bar = Progress(1500, "training", unit="steps", every=0.0, terminal=False, clock=clock)
    clock.now += 8.0
    bar.update(100)
    assert bar.remaining_seconds() is None  # one interval, all compilation: no rate to go by yet
    clock.now += 0.93
    bar.update(100)
    truth = 13 * 0.93
    assert bar.remaining_seconds() == pytest.approx(truth, rel=0.01)
    for _ in range(5):
        clock.now += 0.93
        bar.update(100)
    assert bar.remaining_seconds() == pytest.approx(8 * 0.93, rel=0.01)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "zoo: training: 100/1500 steps (7%)"  # no estimate rather than a wrong one
    assert lines[1] == "zoo: training: 200/1500 steps (13%), 12 s left"


def test_the_terminal_bar_shows_the_zoos_time_left_not_tqdms():
    """tqdm's own estimate counts from the bar's start, compilation included (the same 1 min 41 s);
    the bar on a terminal shows the zoo's, measured after the first update, and no other."""
    clock = ScriptedClock()
    bar = Progress(1500, "training", unit="steps", terminal=True, clock=clock)
    clock.now += 8.0
    bar.update(100)
    assert "left" not in str(bar._bar)
    clock.now += 0.93
    bar.note(loss=1.5)
    bar.update(100)
    shown = str(bar._bar)
    assert "200/1500 steps" in shown and shown.endswith(", 12 s left, loss=1.5]"), shown
    assert "<" not in shown and "it/s" not in shown  # no tqdm estimate or rate beside it
    bar.close()


def test_a_resumed_progress_measures_its_rate_after_its_own_first_update():
    clock = ScriptedClock()
    bar = Progress(1000, "training", unit="steps", initial=600, every=60.0, terminal=False, clock=clock)
    clock.now += 30.0  # restoring and compiling
    bar.update(100)
    clock.now += 1.0
    bar.update(100)
    assert bar.remaining_seconds() == pytest.approx(2.0)


def test_bench_estimate_counts_runs_finished_by_other_processes_and_earlier(tmp_path):
    planned = [bench.Run("vae_mlp", None, None, seed) for seed in range(5)]
    assert bench.time_left(tmp_path, planned, 0) == ""  # nothing finished anywhere: no estimate
    for run, seconds in zip(planned[:2], (30.0, 50.0)):  # finished by another process, or before a stop
        directory = bench.run_dir(tmp_path, run)
        directory.mkdir(parents=True)
        (directory / "result.json").write_text(json.dumps({"wall_seconds": seconds}))
    torn = bench.run_dir(tmp_path, planned[2])
    torn.mkdir(parents=True)
    (torn / "result.json").write_text('{"wall_sec')  # a kill while it was written: no number, no crash
    assert bench.time_left(tmp_path, planned, 3) == ", about 1 min 20 s left for 2 runs"


README = (REPO / "README.md").read_text()
QUICK = REPO / "benchmarks" / "results" / "quick"


def test_the_readme_begins_with_a_quickstart_of_at_most_15_lines():
    sections = re.split(r"^## ", README, flags=re.M)
    assert sections[1].startswith("Quickstart\n"), "the README's first section is not the quickstart"
    body = sections[1].split("\n", 1)[1].strip("\n").splitlines()
    assert len(body) <= 15, f"the quickstart has {len(body)} lines"
    commands = [line.split("  #")[0].strip() for line in body if line.startswith((".venv/bin/zoo", "make "))]
    parser = build_parser()
    for command in commands:  # each zoo command of the quickstart parses as written
        if command.startswith(".venv/bin/zoo "):
            parser.parse_args(shlex.split(command)[1:])
    assert "make run" in commands


def test_the_readmes_quick_table_is_the_committed_reports():
    """What `zoo compare` prints for benchmarks/results/quick (what `make run` prints for its own runs),
    and the tables of that report.md, in the README between its markers."""
    begin, end = "<!-- quick table: begin -->\n", "\n<!-- quick table: end -->"
    in_readme = README[README.index(begin) + len(begin) : README.index(end)]
    assert in_readme == table(read_results([QUICK / "results.jsonl"]))
    assert in_readme in (QUICK / "report.md").read_text()
