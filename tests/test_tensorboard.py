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
