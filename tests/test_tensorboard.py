"""TensorBoard event files: the scalars of metrics.jsonl, sample grids at checkpoints, one history after a resume."""

import pytest

from zoo.training import runs
from zoo.training.tensorboard import TENSORBOARD_DIR, TensorBoardLog, read_events
from zoo.training.experiment import train_and_evaluate
from tests.conftest import TINY

SMALL = [*TINY, "train.log_every=10", "train.checkpoint_every=20"]  # the suite's small model: compiled once


def test_events_hold_the_logged_metrics_and_a_sample_grid_per_checkpoint(tmp_path, book, registry):
    train_and_evaluate(
        book.resolve("cvae_mlp", registry, [*SMALL, "train.steps=40"]), tmp_path, registry, progress=False
    )
    events = read_events(tmp_path)
    for record in runs.read_metrics(tmp_path):
        for name in ("loss", "elbo", "kl"):
            if name in record:
                assert (record["step"], f"{record['split']}/{name}", pytest.approx(record[name], rel=1e-6)) in events
    assert [step for step, tag, _ in events if tag == "samples"] == [20, 40]
    assert [step for step, tag, _ in events if tag == "train/loss"] == [10, 20, 30, 40]


def test_a_resume_leaves_one_history(tmp_path, book, registry):
    train_and_evaluate(
        book.resolve("vae_mlp", registry, [*SMALL, "train.steps=40"]), tmp_path, registry, progress=False
    )
    stale = TensorBoardLog(tmp_path, 41)  # a killed continuation that logged past its last checkpoint
    stale.scalars("train", {"loss": 1e9}, 50)
    stale.close()
    train_and_evaluate(
        book.resolve("vae_mlp", registry, [*SMALL, "train.steps=60"]), tmp_path, registry, resume=True, progress=False
    )
    losses = [(step, value) for step, tag, value in read_events(tmp_path) if tag == "train/loss"]
    assert [step for step, _ in losses] == [10, 20, 30, 40, 50, 60]
    assert all(value < 1e8 for _, value in losses)


def test_tensorboard_off(tmp_path, book, registry):
    train_and_evaluate(
        book.resolve("vae_mlp", registry, [*SMALL, "train.steps=20", "train.tensorboard=false"]),
        tmp_path,
        registry,
        progress=False,
    )
    assert not (tmp_path / TENSORBOARD_DIR).exists()


def test_sessions_opened_within_one_second_keep_their_own_files(tmp_path, monkeypatch):
    """tensorboardX names a file by the second; a resume in the same second must not overwrite the first."""
    import time

    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)  # every writer opens "at the same second"
    for first_step, value in ((0, 1.0), (2, 2.0)):
        log = TensorBoardLog(tmp_path, first_step)
        log.scalars("train", {"loss": value}, first_step + 1)
        log.close()
    assert len(list((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    assert [(step, value) for step, tag, value in read_events(tmp_path) if tag == "train/loss"] == [(1, 1.0), (3, 2.0)]


def test_writing_events_leaves_pytorch_unimported_and_importable(tmp_path):
    """tensorboardX imports PyTorch when it is installed (4.7 s of `zoo train`'s start here); the
    zoo hides it during that import, so a fresh process writes events without it, and a notebook
    that imports torch afterwards still gets it."""
    import importlib.util
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from zoo.training.tensorboard import TensorBoardLog, read_events\n"
        f"log = TensorBoardLog({str(tmp_path)!r}, purge_from=0)\n"
        "log.scalars('train', {'loss': 2.5}, 1); log.close()\n"
        f"print(read_events({str(tmp_path)!r}), 'torch' in sys.modules)\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('torch'):\n"
        "    import torch; print(torch.zeros(1).shape)\n"
    )
    lines = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert lines[0] == "[(1, 'train/loss', 2.5)] False"
    if importlib.util.find_spec("torch"):
        assert lines[1] == "torch.Size([1])"
