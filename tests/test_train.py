"""Training: determinism, resumption, divergence, the run directory."""

import json

import jax
import numpy as np
import pytest
import yaml

import zoo
from zoo.training import runs
from zoo.training.experiment import train_and_evaluate
from zoo.evaluation.trained_run import Run
from zoo.training.step import step_key
from tests.conftest import TINY

SMALL = [*TINY, "train.log_every=5", "train.checkpoint_every=10"]  # the suite's small model: compiled once


def recipe(book, registry, *extra, variant="vae_mlp"):
    return book.resolve(variant, registry, [*SMALL, *extra])


def params_of(workdir, registry):
    loaded = Run.load(workdir, registry)
    params, step = loaded.params, loaded.step
    return step, jax.tree.leaves(params)


def test_same_seed_same_numbers(tmp_path, book, registry):
    for name in ("a", "b"):
        train_and_evaluate(recipe(book, registry, "train.steps=10"), tmp_path / name, registry, progress=False)
    a, b = (runs.read_metrics(tmp_path / n) for n in ("a", "b"))
    strip = lambda records: [{k: v for k, v in r.items() if k != "steps_per_second"} for r in records]
    assert strip(a) == strip(b)
    for x, y in zip(params_of(tmp_path / "a", registry)[1], params_of(tmp_path / "b", registry)[1]):
        np.testing.assert_array_equal(x, y)


def test_resume_continues_where_a_killed_run_stopped(tmp_path, book, registry):
    straight = tmp_path / "straight"
    train_and_evaluate(recipe(book, registry, "train.steps=20"), straight, registry, progress=False)
    killed = tmp_path / "killed"
    train_and_evaluate(recipe(book, registry, "train.steps=10"), killed, registry, progress=False)
    # A kill after logging step 15 but before its checkpoint: the stale line must go.
    runs.append_metrics(killed, {"step": 15, "split": "train", "loss": 1e9})
    summary = train_and_evaluate(
        recipe(book, registry, "train.steps=20"), killed, registry, resume=True, progress=False
    )
    assert summary["step"] == 20
    steps = [r["step"] for r in runs.read_metrics(killed) if r["split"] == "train"]
    assert steps == [5, 10, 15, 20]
    step_a, leaves_a = params_of(straight, registry)
    step_b, leaves_b = params_of(killed, registry)
    assert step_a == step_b == 20
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_an_existing_run_is_never_overwritten(tmp_path, book, registry):
    train_and_evaluate(recipe(book, registry, "train.steps=5"), tmp_path, registry, progress=False)
    with pytest.raises(zoo.RunDirectoryError, match="already holds a run; pass --resume"):
        train_and_evaluate(recipe(book, registry, "train.steps=5"), tmp_path, registry, progress=False)
    with pytest.raises(zoo.RunDirectoryError, match="the recipe differs at latent_dim: 2 in the run, 5 now"):
        train_and_evaluate(
            recipe(book, registry, "train.steps=5", "latent_dim=5"), tmp_path, registry, resume=True, progress=False
        )


def test_a_run_saved_before_an_option_existed_resumes_at_its_default(tmp_path, book, registry):
    train_and_evaluate(recipe(book, registry, "train.steps=10"), tmp_path, registry, progress=False)
    saved = tmp_path / "recipe.yaml"
    # As a zoo without objective.free_bits wrote it: the option's absence meant what its default means now.
    old = yaml.safe_load(saved.read_text())
    del old["objective"]["free_bits"]
    saved.write_text(yaml.safe_dump(old))
    summary = train_and_evaluate(
        recipe(book, registry, "train.steps=20"), tmp_path, registry, resume=True, progress=False
    )
    assert summary["step"] == 20
    with pytest.raises(zoo.RunDirectoryError, match="differs at objective.free_bits: 0.0 in the run, 1.0 now"):
        train_and_evaluate(
            recipe(book, registry, "train.steps=30", "objective.free_bits=1.0"),
            tmp_path,
            registry,
            resume=True,
            progress=False,
        )


def test_workdir_holds_recipe_versions_metrics_and_checkpoints(tmp_path, book, registry):
    summary = train_and_evaluate(recipe(book, registry, "train.steps=10"), tmp_path, registry, progress=False)
    assert (tmp_path / "recipe.yaml").read_text().startswith("variant: vae_mlp")
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions["jax"] == jax.__version__ and versions["flax"]
    records = runs.read_metrics(tmp_path)
    assert {r["split"] for r in records} == {"train", "validation"}
    assert all(np.isfinite(r["loss"]) for r in records if r["split"] == "train")
    assert (tmp_path / "checkpoints" / "10").is_dir()
    assert summary["validation_elbo"] < 0


def nan_sometimes():
    """A test objective: the ELBO loss, but NaN on the steps whose key draws u < 0.15."""
    elbo = zoo.core.objectives.elbo()

    def loss_fn(model, batch, rng):
        loss, metrics = elbo(model, batch, rng)
        poisoned = jax.random.uniform(jax.random.fold_in(rng, 11)) < 0.15
        return jax.numpy.where(poisoned, jax.numpy.nan, loss), metrics

    return loss_fn


def test_nan_loss_stops_with_the_step_and_last_good_checkpoint(tmp_path, book):
    import types

    from tests.conftest import first_party_registry

    plugin = types.ModuleType("nan_plugin")
    plugin.register_components = zoo.hookimpl(lambda register: register("objective", "nan_sometimes", nan_sometimes))
    registry = first_party_registry(plugin)
    draws = np.array([float(jax.random.uniform(jax.random.fold_in(step_key(0, s), 11))) for s in range(200)])
    first_bad = int(np.argmax(draws < 0.15)) + 1  # the key of step s trains towards step s + 1
    assert first_bad > 10, "the seed must let a checkpoint be written first"
    with pytest.raises(zoo.TrainingDivergedError) as info:
        train_and_evaluate(
            recipe(book, registry, "train.steps=200", "objective={name: nan_sometimes}"),
            tmp_path,
            registry,
            progress=False,
        )
    last_checkpoint = (first_bad - 1) // 10 * 10
    assert f"loss became nan at step {first_bad};" in str(info.value)
    assert f"the last good checkpoint is step {last_checkpoint} in {tmp_path}/checkpoints/{last_checkpoint}" in str(
        info.value
    )


def test_wall_clock_cap_stops_at_a_log_boundary_with_a_checkpoint(tmp_path, book, registry):
    summary = train_and_evaluate(
        recipe(book, registry, "train.steps=1000"), tmp_path, registry, progress=False, max_seconds=1e-9
    )
    assert summary["stopped_by_time_limit"] and summary["step"] == 5
    step, _ = params_of(tmp_path, registry)
    assert step == 5
