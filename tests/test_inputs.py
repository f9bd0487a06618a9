"""The streamed input path (grain) against the in-memory one: the same batches, the same numbers."""

import numpy as np
import pytest

import zoo
from zoo.training import inputs, runs
from zoo.config import TrainConfig
from zoo.core.data import batch_indices
from zoo.core.interfaces import Split
from zoo.training.experiment import train_and_evaluate


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


LOOP_VARIANTS = {
    "vae_mlp": ["encoder.hidden=[32]", "decoder.hidden=[32]"],
    "vae_conv": ["encoder.channels=[4, 8]", "encoder.hidden=16", "decoder.channels=[8, 4]"],
}


def per_step_losses(book, registry, variant, loop, steps, overrides=()):
    """(each step's loss, the in-memory input) of `steps` steps of a small `variant` under `train.loop`."""
    from zoo.core.assembly import assemble
    from zoo.core.recipes import train_config
    from zoo.training.step import initial_state
    from zoo.training.loop import training_input

    recipe = book.resolve(variant, registry, [*LOOP_VARIANTS[variant], f"train.loop={loop}", *overrides])
    experiment, config = assemble(recipe, registry), train_config(recipe)
    graphdef, optimizer, state = initial_state(experiment.model, config)
    batches = training_input(experiment, config, graphdef, optimizer, "memory", 0, steps)
    _, first = batches.run(state, 0, steps - 3)  # as the training loop calls it: chunk by chunk
    _, rest = batches.run(_, steps - 3, steps)
    return np.concatenate([first["loss"], rest["loss"]]), batches


@pytest.mark.slow  # each variant trained twice, vae_conv among them
@pytest.mark.parametrize("variant", sorted(LOOP_VARIANTS))
def test_scanned_and_per_step_loops_give_the_same_losses(book, registry, variant):
    # 23 steps: two scanned blocks of 10 and single steps for the remainders (17 and 3 steps a chunk).
    scanned, batches = per_step_losses(book, registry, variant, "scan", 23)
    per_step, _ = per_step_losses(book, registry, variant, "step", 23)
    assert batches.loop == "scan" and len(scanned) == 23
    np.testing.assert_allclose(scanned, per_step, rtol=1e-5)


def test_auto_times_both_loops_and_keeps_the_faster(book, registry, monkeypatch):
    monkeypatch.setattr(inputs, "SCAN_BLOCK", 2)
    monkeypatch.setattr(inputs, "CALIBRATION_ROUNDS", 1)
    monkeypatch.setattr(inputs, "CALIBRATION_STEPS", 2 + 1 + 2 * 2)
    auto, batches = per_step_losses(book, registry, "vae_mlp", "auto", 14)
    per_step, _ = per_step_losses(book, registry, "vae_mlp", "step", 14)
    assert set(batches.timings) == {"scan", "step"} and all(t > 0 for t in batches.timings.values())
    assert batches.loop == min(batches.timings, key=batches.timings.get)
    np.testing.assert_allclose(auto, per_step, rtol=1e-5)


def test_train_loop_setting_is_checked_and_reported(book, registry, tmp_path):
    with pytest.raises(zoo.RecipeError, match="train.loop"):
        book.resolve("vae_mlp", registry, ["train.loop=fast"])
    recipe = book.resolve("vae_mlp", registry, [*LOOP_VARIANTS["vae_mlp"], "train.steps=20", "train.loop=scan"])
    assert train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)["loop"] == "scan"
