"""Faults during training: signals, kill -9, two trainers, damaged files; then resume.

Each interrupted run is resumed to the same step as an uninterrupted one, and
must end with the same parameters and a log that holds every step once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import zoo
from tests import conftest
from zoo.training import checkpoints, runs
from zoo.training.experiment import train_and_evaluate
from zoo.training.signals import TrainingInterrupted
from zoo.evaluation.trained_run import Run

REPO = Path(__file__).resolve().parent.parent
TINY = [*conftest.TINY, "train.log_every=20"]  # the suite's small model: compiled once per session
LONG = 200_000  # more steps than any test waits for: the run is stopped from outside


def tiny(book, registry, *extra):
    return book.resolve("vae_mlp", registry, [*TINY, *extra])


def start_training(workdir: Path, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "zoo.cli.main",
        "train",
        "vae_mlp",
        "--workdir",
        str(workdir),
        "--quiet",
        *[word for setting in [*TINY, f"train.steps={LONG}", *extra] for word in ("--set", setting)],
    ]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(workdir: Path, process: subprocess.Popen, step: int, timeout: float = 240) -> None:
    """Until the run has logged a training record at `step` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        logged = (
            [r["step"] for r in runs.read_metrics(workdir) if r["split"] == "train"]
            if (workdir / "metrics.jsonl").exists()
            else []
        )
        if logged and logged[-1] >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def params_at(workdir, registry):
    loaded = Run.load(workdir, registry, checkpoint="newest")
    params, step = loaded.params, loaded.step
    return step, jax.tree.leaves(params)


def assert_same_run(resumed: Path, straight: Path, registry) -> None:
    """Same final parameters, and a log with each step once and the same losses at the common steps."""
    step_a, leaves_a = params_at(resumed, registry)
    step_b, leaves_b = params_at(straight, registry)
    assert step_a == step_b
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    logged = [r["step"] for r in runs.read_metrics(resumed) if r["split"] == "train"]
    assert logged == sorted(set(logged)), "a step is logged twice"


def finish_and_compare(workdir: Path, stopped_at: int, book, registry, tmp_path: Path) -> None:
    """Resume the stopped run to a common step and compare it with one that was never stopped."""
    target = (stopped_at // 20 + 2) * 20
    straight = tmp_path / "straight"
    train_and_evaluate(tiny(book, registry, f"train.steps={target}"), straight, registry, progress=False)
    summary = train_and_evaluate(
        tiny(book, registry, f"train.steps={target}"), workdir, registry, resume=True, progress=False
    )
    assert summary["step"] == target
    assert_same_run(workdir, straight, registry)


@pytest.mark.slow  # a trainer subprocess, signalled
@pytest.mark.parametrize(
    ("signum", "status", "checkpoint_every"),
    [
        (signal.SIGINT, 130, 100000),  # no scheduled checkpoint before the signal
        (signal.SIGTERM, 143, 100000),
        (signal.SIGTERM, 143, 5),  # most of the time goes to writing checkpoints: the signal lands in or near a write
    ],
)
def test_a_signal_checkpoints_the_step_reached_and_says_how_to_resume(
    signum, status, checkpoint_every, tmp_path, book, registry
):
    workdir = tmp_path / "run"
    process = start_training(workdir, f"train.checkpoint_every={checkpoint_every}")
    wait_for_step(workdir, process, 200)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    stopped_at = int(stderr.split(" at step ")[1].split()[0])
    assert f"checkpoint written in {workdir / 'checkpoints' / str(stopped_at)}" in stderr
    assert "zoo: continue with: zoo train vae_mlp --workdir" in stderr and stderr.rstrip().endswith("--resume")
    assert checkpoints.checkpoint_manager(workdir).latest_step() == stopped_at >= 200
    # The steps since the last record wait in the checkpoint, not in a record of a partial window.
    logged = max(r["step"] for r in runs.read_metrics(workdir))
    assert logged <= stopped_at < logged + 20
    assert json.loads((workdir / runs.LOCK_FILE).read_text() or "null") is None  # released
    finish_and_compare(workdir, stopped_at, book, registry, tmp_path)
    if checkpoint_every > stopped_at:  # both runs logged every 20 steps: the resumed log is the straight one
        train_records = lambda run: [(r["step"], r["loss"]) for r in runs.read_metrics(run) if r["split"] == "train"]
        resumed, straight = train_records(workdir), train_records(tmp_path / "straight")
        assert [step for step, _ in resumed] == [step for step, _ in straight]
        np.testing.assert_allclose([loss for _, loss in resumed], [loss for _, loss in straight], rtol=1e-4)


@pytest.mark.slow  # three trainings of 500 steps
def test_a_stop_between_two_log_steps_leaves_whole_records(tmp_path, book, registry, monkeypatch):
    """Stopped at step 453 with a record every 50 steps, resumed to 500: the record at 500 holds the
    means over steps 451-500, as in a run never stopped (not over 454-500 beside one at 453)."""
    from zoo.training import loop as training

    settings = ["train.steps=500", "train.log_every=50", "train.checkpoint_every=500"]
    made = training.training_input

    def stopping_at_453(*args, **kwargs):
        batches = made(*args, **kwargs)
        run = batches.run

        def run_until_the_signal(state, start, stop, halt=None):
            if start < 453 < stop:  # the signal comes after step 453: the loop stops dispatching there
                state, metrics = run(state, start, 453, halt)
                halt.signum = signal.SIGTERM
                return state, metrics
            return run(state, start, stop, halt)

        batches.run = run_until_the_signal
        return batches

    monkeypatch.setattr(training, "training_input", stopping_at_453)
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM at step 453 of 500"):
        train_and_evaluate(tiny(book, registry, *settings), tmp_path / "run", registry, progress=False)
    monkeypatch.undo()
    assert [r["step"] for r in runs.read_metrics(tmp_path / "run") if r["split"] == "train"][-1] == 450
    train_and_evaluate(tiny(book, registry, *settings), tmp_path / "run", registry, resume=True, progress=False)
    train_and_evaluate(tiny(book, registry, *settings), tmp_path / "straight", registry, progress=False)
    records = {
        name: [r for r in runs.read_metrics(tmp_path / name) if r["split"] == "train"] for name in ("run", "straight")
    }
    assert [r["step"] for r in records["run"]] == [r["step"] for r in records["straight"]] == list(range(50, 501, 50))
    for resumed, straight in zip(records["run"], records["straight"]):
        for metric in ("loss", "elbo", "kl"):
            np.testing.assert_allclose(resumed[metric], straight[metric], rtol=1e-4)


@pytest.mark.slow  # a trainer subprocess, killed
def test_kill_9_while_checkpoints_are_written_loses_at_most_one_interval(tmp_path, book, registry):
    """A checkpoint every 5 steps: most of the time goes to writing them, so the kill lands in or near a write."""
    workdir = tmp_path / "run"
    process = start_training(workdir, "train.checkpoint_every=5", "train.log_every=5")
    wait_for_step(workdir, process, 100)
    time.sleep(0.37)
    process.kill()
    process.communicate(timeout=60)
    newest = checkpoints.checkpoint_manager(workdir).latest_step()
    logged = max(r["step"] for r in runs.read_metrics(workdir))
    assert newest is not None and logged - newest <= 5
    finish_and_compare(workdir, logged, book, registry, tmp_path)


def test_a_second_trainer_is_refused_naming_the_first(tmp_path, book, registry):
    workdir = tmp_path / "run"
    train_and_evaluate(tiny(book, registry, "train.steps=20"), workdir, registry, progress=False)
    with runs.trainer_lock(workdir):
        with pytest.raises(runs.WorkdirBusyError, match=rf"is being trained by PID {os.getpid()} on host "):
            train_and_evaluate(tiny(book, registry, "train.steps=40"), workdir, registry, resume=True, progress=False)
    assert max(r["step"] for r in runs.read_metrics(workdir)) == 20  # the refused one wrote nothing


def test_the_lock_of_a_dead_trainer_is_taken_over(tmp_path, book, registry, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / runs.LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    train_and_evaluate(tiny(book, registry, "train.steps=20"), workdir, registry, progress=False)
    assert (
        "taking over the lock of PID 999999 on host elsewhere (since yesterday), which no longer runs"
        in capsys.readouterr().err
    )
    assert (workdir / runs.LOCK_FILE).read_text() == ""


def test_a_torn_last_log_line_is_tolerated_and_dropped_on_resume(tmp_path, book, registry):
    workdir = tmp_path / "run"
    train_and_evaluate(
        tiny(book, registry, "train.steps=40", "train.checkpoint_every=20"), workdir, registry, progress=False
    )
    with open(workdir / "metrics.jsonl", "a") as log:
        log.write('{"step": 60, "split": "tr')  # a kill mid-write
    assert [r["step"] for r in runs.read_metrics(workdir)][-1] == 40
    train_and_evaluate(
        tiny(book, registry, "train.steps=60", "train.checkpoint_every=20"),
        workdir,
        registry,
        resume=True,
        progress=False,
    )
    text = (workdir / "metrics.jsonl").read_text()
    assert text.endswith("\n") and '"tr\n' not in text and '"split": "tr{' not in text
    assert [r["step"] for r in runs.read_metrics(workdir) if r["split"] == "train"] == [20, 40, 60]


def test_a_damaged_line_inside_the_log_is_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(zoo.RunDirectoryError, match=r"metrics.jsonl:2: not a JSON line .*the file is damaged"):
        runs.read_metrics(tmp_path)


def test_a_resume_without_a_checkpoint_starts_a_clean_log(tmp_path, book, registry):
    workdir = tmp_path / "run"
    train_and_evaluate(tiny(book, registry, "train.steps=20"), workdir, registry, progress=False)
    for directory in ("checkpoints", "best"):
        for child in (workdir / directory).iterdir():
            os.system(f"rm -rf '{child}'")
    runs.append_metrics(workdir, {"step": 30, "split": "train", "loss": 1.0})
    train_and_evaluate(tiny(book, registry, "train.steps=20"), workdir, registry, resume=True, progress=False)
    assert [r["step"] for r in runs.read_metrics(workdir) if r["split"] == "train"] == [20]


def damage(checkpoint: Path, how: str) -> None:
    """Damage one checkpoint as a full disk, a kill or a bad copy would."""
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file())
    if how == "emptied":
        for path in files:
            path.unlink()
    elif how == "truncated":
        for path in files:
            if path.stat().st_size > 64:
                with open(path, "r+b") as stream:
                    stream.truncate(path.stat().st_size // 2)
    elif how == "garbled":
        for path in files:
            path.write_bytes(b"\x00garbage" * 8)


@pytest.fixture(scope="module")
def two_checkpoints(book, registry, tmp_path_factory):
    """A run with checkpoints at steps 20 and 40 (newest and best at 40)."""
    workdir = tmp_path_factory.mktemp("faults") / "run"
    train_and_evaluate(
        book.resolve("vae_mlp", registry, [*TINY, "train.steps=40", "train.checkpoint_every=20"]),
        workdir,
        registry,
        progress=False,
    )
    return workdir


@pytest.mark.parametrize("how", ["emptied", "truncated", "garbled"])
def test_a_damaged_newest_checkpoint_is_named_and_the_one_before_used(how, two_checkpoints, registry, tmp_path, capsys):
    workdir = tmp_path / "run"
    os.system(f"cp -r '{two_checkpoints}' '{workdir}'")
    damage(workdir / "checkpoints" / "40", how)
    step = Run.load(workdir, registry, checkpoint="newest").step
    err = capsys.readouterr().err
    assert step == 20
    assert (
        f"the checkpoint {(workdir / 'checkpoints' / '40').resolve()} is damaged" in err
        or f"the checkpoint {workdir / 'checkpoints' / '40'} is damaged" in err
    ), err
    assert "using step 20 of" in err and err.count("\n") == 1


def test_a_damaged_best_checkpoint_falls_back_to_the_newest(two_checkpoints, registry, tmp_path, capsys):
    workdir = tmp_path / "run"
    os.system(f"cp -r '{two_checkpoints}' '{workdir}'")
    for best in (workdir / "best").iterdir():
        damage(best, "emptied")
    step = Run.load(workdir, registry).step
    assert step == 40 and "using the newest checkpoint instead" in capsys.readouterr().err


def test_no_good_checkpoint_stops_with_one_line(two_checkpoints, registry, tmp_path):
    workdir = tmp_path / "run"
    os.system(f"cp -r '{two_checkpoints}' '{workdir}'")
    for checkpoint in (workdir / "checkpoints").iterdir():
        damage(checkpoint, "garbled")
    with pytest.raises(zoo.RunDirectoryError, match="no readable checkpoint: .*checkpoints/40 .*checkpoints/20"):
        Run.load(workdir, registry, checkpoint="newest")


def test_a_resume_moves_a_damaged_checkpoint_aside_and_trains_on(two_checkpoints, book, registry, tmp_path):
    workdir = tmp_path / "run"
    os.system(f"cp -r '{two_checkpoints}' '{workdir}'")
    damage(workdir / "checkpoints" / "40", "truncated")
    recipe = book.resolve("vae_mlp", registry, [*TINY, "train.steps=60", "train.checkpoint_every=20"])
    train_and_evaluate(recipe, workdir, registry, resume=True, progress=False)
    assert (workdir / "damaged" / "checkpoints-40").is_dir()  # kept, not deleted
    straight = tmp_path / "straight"
    train_and_evaluate(recipe, straight, registry, progress=False)
    assert_same_run(workdir, straight, registry)


def torn(checkpoint: Path) -> None:
    """The state a kill inside orbax's write of `checkpoint` leaves: its temporary directory, never renamed."""
    checkpoint.rename(checkpoint.with_name(f"{checkpoint.name}.orbax-checkpoint-tmp"))


# The states a kill can leave between the training checkpoints (written second) and the best
# ones (written first), built by hand from a run with both at steps 20 and 40:
# (what to do to it, the step the resume starts from, what it must say).
KILLED_BETWEEN_THE_MANAGERS = {
    "inside the first training checkpoint, the best one written": (
        lambda run: [
            shutil.rmtree(run / "checkpoints" / "40"),
            shutil.rmtree(run / "best" / "40"),
            torn(run / "checkpoints" / "20"),
        ],
        0,
        "resuming from step 0 (no training checkpoint was written whole): removing the best checkpoint of step 20 in",
    ),
    "inside a later training checkpoint, the best one written": (
        lambda run: torn(run / "checkpoints" / "40"),
        20,
        "resuming from step 20 (the newest training checkpoint): removing the best checkpoint of step 40 in",
    ),
    "inside the best checkpoint, before the training one": (
        lambda run: [shutil.rmtree(run / "checkpoints" / "40"), torn(run / "best" / "40")],
        20,
        None,
    ),
    "the training checkpoint written, its best one lost": (
        lambda run: shutil.rmtree(run / "best" / "40"),
        40,
        "the best checkpoint of step 40 is missing from",
    ),
}


@pytest.fixture(scope="module")
def straight_to_60(book, registry, tmp_path_factory):
    """The run of `two_checkpoints` trained to step 60 without a stop."""
    workdir = tmp_path_factory.mktemp("straight") / "run"
    recipe = book.resolve("vae_mlp", registry, [*TINY, "train.steps=60", "train.checkpoint_every=20"])
    train_and_evaluate(recipe, workdir, registry, progress=False)
    return workdir


@pytest.mark.parametrize("state", KILLED_BETWEEN_THE_MANAGERS)
def test_a_kill_between_the_two_checkpoint_managers_resumes(
    state, two_checkpoints, straight_to_60, book, registry, tmp_path, capsys
):
    make, resumed_from, said = KILLED_BETWEEN_THE_MANAGERS[state]
    workdir = tmp_path / "run"
    shutil.copytree(two_checkpoints, workdir)
    make(workdir)
    capsys.readouterr()
    recipe = book.resolve("vae_mlp", registry, [*TINY, "train.steps=60", "train.checkpoint_every=20"])
    train_and_evaluate(recipe, workdir, registry, resume=True, progress=False)
    err = capsys.readouterr().err
    assert (said in err) if said else ("best checkpoint" not in err), err
    assert "Traceback" not in err
    steps = [r["step"] for r in runs.read_metrics(workdir) if r["split"] == "train"]
    assert steps == [20, 40, 60]  # the log from the start, or kept up to the step resumed from
    assert_same_run(workdir, straight_to_60, registry)
    leftovers = [p.name for d in ("checkpoints", "best") for p in (workdir / d).iterdir() if "tmp" in p.name]
    assert not leftovers, leftovers  # the killed writes' temporary directories are cleared
    assert Run.load(workdir, registry).step == Run.load(straight_to_60, registry).step
    if resumed_from == 40:
        assert 40 in checkpoints.best_checkpoint_manager(workdir).all_steps()


def test_a_recipe_edited_to_another_model_is_named(two_checkpoints, registry, tmp_path):
    workdir = tmp_path / "run"
    os.system(f"cp -r '{two_checkpoints}' '{workdir}'")
    recipe = workdir / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("latent_dim: 2", "latent_dim: 3"))
    with pytest.raises(
        zoo.RunDirectoryError,
        match=r"best/40 does not match the run's recipe.yaml: .* is \(2, 16\) in the "
        r"checkpoint, \(3, 16\) in the model recipe.yaml describes \(was recipe.yaml edited\?\)",
    ):
        Run.load(workdir, registry)


PREPARE_AT_ONCE = """
import sys, time
from pathlib import Path
from vae_zoo_plugins.datasets import mnist_family

idx_dir, cache, me, other = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
files = mnist_family.locate_idx(mnist_family.SOURCES["fashion_mnist"], idx_dir)
mnist_family.builder_classes()  # TFDS imported before the start line: both prepare at the same moment
me.touch()
while not other.exists():
    time.sleep(0.01)
arrays = mnist_family.prepared_arrays("fashion_mnist", files, cache, False, "")
print(int(arrays["train"]["image"].sum()), len(arrays["test"]["label"]))
"""


@pytest.mark.slow  # two subprocesses preparing TFDS copies
def test_two_processes_preparing_one_dataset_at_once_both_get_it(idx_dir, tmp_path):
    """Two `zoo train` runs started together on a cache not yet prepared: one prepares the TFDS
    copy, the other waits for it and reads it (TFDS's rename of its finished copy failed the
    second with FileExistsError)."""
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARE_AT_ONCE, str(idx_dir), str(tmp_path / "cache"), str(me), str(other)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in (ready, ready[::-1])
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    answers = [stdout.splitlines()[-1] for stdout, _ in outputs]  # after what TFDS prints while preparing
    assert answers[0] == answers[1] and answers[0].split()[1] == "100", outputs


def test_a_refused_recipe_writes_nothing(tmp_path, book, registry):
    workdir = tmp_path / "run"
    with pytest.raises(zoo.ZooError, match="batch"):
        train_and_evaluate(
            tiny(book, registry, "train.batch_size=5000", "train.steps=5"), workdir, registry, progress=False
        )
    assert not workdir.exists()
    train_and_evaluate(
        tiny(book, registry, "train.steps=5", "train.log_every=5"), workdir, registry, progress=False
    )  # the retry


def test_a_full_disk_is_one_line_and_the_resume_continues(tmp_path, book, registry, monkeypatch):
    import errno

    import orbax.checkpoint as ocp

    workdir = tmp_path / "run"
    recipe = tiny(book, registry, "train.steps=60", "train.checkpoint_every=20")
    real_save = ocp.CheckpointManager.save

    def full_at_40(self, step, *args, **kwargs):
        if step == 40:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_at_40)
    with pytest.raises(
        zoo.RunDirectoryError,
        match=r"cannot write the (best )?checkpoint of step 40 in .*: No space left on device; "
        "what was written before is intact",
    ):
        train_and_evaluate(recipe, workdir, registry, progress=False)
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    assert checkpoints.checkpoint_manager(workdir).latest_step() == 20
    train_and_evaluate(recipe, workdir, registry, resume=True, progress=False)
    straight = tmp_path / "straight"
    train_and_evaluate(recipe, straight, registry, progress=False)
    assert_same_run(workdir, straight, registry)


def test_a_log_rewrite_that_fails_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    import errno
    from pathlib import Path as _Path

    runs.append_metrics(tmp_path, {"step": 10, "split": "train"})
    runs.append_metrics(tmp_path, {"step": 20, "split": "train"})
    before = (tmp_path / "metrics.jsonl").read_text()

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_Path, "write_text", no_space)
    with pytest.raises(zoo.RunDirectoryError, match="cannot write .*metrics.jsonl: No space left on device"):
        runs.truncate_metrics(tmp_path, 10)
    monkeypatch.undo()
    assert (tmp_path / "metrics.jsonl").read_text() == before
