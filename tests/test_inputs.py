"""The streamed input path (grain) against the in-memory one: the same batches, the same numbers."""

import numpy as np
import pytest

import zoo
from zoo import inputs, runs
from zoo.config import TrainConfig
from zoo.data import batch_indices
from zoo.interfaces import Split
from zoo.experiment import train_and_evaluate


def test_streamed_batches_are_the_in_memory_batches():
    images = np.arange(50 * 4, dtype=np.float32).reshape(50, 2, 2, 1)
    split = Split(images, np.arange(50, dtype=np.int32))
    blocks = inputs.host_blocks(
        split, 8, seed=3, start=4, stop=15, mesh=None
    )  # crosses an epoch boundary (6 steps an epoch)
    streamed = [batch for images, labels in blocks for batch in zip(images, labels)]
    expected = batch_indices(50, 8, 3, 4, 11)
    assert len(streamed) == 11
    for (batch_images, batch_labels), rows in zip(streamed, expected):
        np.testing.assert_array_equal(batch_labels, rows)
        np.testing.assert_array_equal(batch_images, images[rows])


def test_streamed_training_gives_the_in_memory_losses(book, registry, tmp_path):
    losses = {}
    for kind in ("memory", "stream"):
        recipe = book.resolve(
            "vae_mlp",
            registry,
            [
                "train.steps=60",
                "train.log_every=20",
                f"train.input={kind}",
                "encoder.hidden=[32]",
                "decoder.hidden=[32]",
            ],
        )
        summary = train_and_evaluate(recipe, tmp_path / kind, registry, progress=False)
        assert summary["input"] == kind
        losses[kind] = [r["loss"] for r in runs.read_metrics(tmp_path / kind) if r["split"] == "train"]
    # Same rows, same binarization draws (dynamic binarization happens in the step), same updates.
    assert losses["stream"] == losses["memory"]


def test_auto_streams_a_split_over_the_memory_budget(book, registry, tmp_path):
    split = Split(np.zeros((1000, 28, 28, 1), np.float32), np.zeros(1000, np.int32))  # 2.99 MiB
    assert inputs.choose_input(TrainConfig(memory_budget_mb=3.0), split) == "memory"
    assert inputs.choose_input(TrainConfig(memory_budget_mb=2.9), split) == "stream"
    assert inputs.choose_input(TrainConfig(input="memory", memory_budget_mb=1.0), split) == "memory"
    recipe = book.resolve(
        "vae_mlp",
        registry,
        ["train.steps=10", "train.memory_budget_mb=0.1", "encoder.hidden=[8]", "decoder.hidden=[8]"],
    )
    assert train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)["input"] == "stream"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.input=disk", "vae_mlp.train.input: expected one of 'auto', 'memory', 'stream', got 'disk'"),
        ("train.memory_budget_mb=0", "vae_mlp.train.memory_budget_mb: expected a positive number, got 0"),
    ],
)
def test_bad_input_settings_name_the_key(book, registry, override, message):
    with pytest.raises(zoo.RecipeError, match=message.replace("(", r"\(")):
        book.resolve("vae_mlp", registry, [override])
