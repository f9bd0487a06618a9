"""Training at a paper's protocol: optax optimizers and schedules from the recipe, the KL
warm-up, early stopping with the best checkpoint, and the refusals of bad settings."""

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import zoo
from tests.conftest import TINY
from tests.test_cli import assert_clean_error, zoo as run_zoo, zoo_in_process
from zoo.training import checkpoints, early_stopping, runs
from zoo.core import objectives, optim
from zoo.config import EarlyStopping, TrainConfig
from zoo.core.objectives import kl_weight_schedule
from zoo.training.experiment import train_and_evaluate
from zoo.evaluation.trained_run import Run


def train_settings(book, registry, *overrides):
    return book.resolve("vae_mlp", registry, list(overrides))["train"]


def test_optimizer_and_schedule_are_optax_own(book, registry):
    train = train_settings(
        book,
        registry,
        "train.optimizer={name: sgd, momentum: 0.9}",
        "train.schedule={name: warmup_cosine_decay, warmup_steps: 10, decay_steps: 100, end_value: 1.0e-5}",
        "train.learning_rate=0.1",
        "train.clip_grad_norm=1.0",
    )
    config = TrainConfig(**train)
    schedule = optim.learning_rate_schedule(config)
    reference = optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 100, 1e-5)  # the warm-up rises from 0
    for step in (0, 5, 10, 50, 100, 150):
        assert float(schedule(step)) == pytest.approx(float(reference(step)))
    # The chain: clipping, then SGD with momentum at that schedule: one update equals optax's own.
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([3.0, 4.0, 0.0])}
    ours = optim.make_optimizer(config)
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(reference, momentum=0.9))
    for _ in range(3):
        mine, _ = ours.update(grads, ours.init(params), params)
        expected, _ = theirs.update(grads, theirs.init(params), params)
        np.testing.assert_allclose(mine["w"], expected["w"], rtol=1e-6)


def test_normalized_gradients_have_unit_norm_per_tensor():
    transform = optim.normalize_each_gradient()
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[0.0, 2.0], [0.0, 0.0]])}
    updates, _ = transform.update(grads, transform.init(grads))
    assert float(jnp.linalg.norm(updates["a"])) == pytest.approx(1.0, abs=1e-6)
    assert float(jnp.linalg.norm(updates["b"])) == pytest.approx(1.0, abs=1e-6)


def test_kl_warmup_is_optax_linear_schedule():
    schedule = kl_weight_schedule(kl_warmup_epochs=2, steps_per_epoch=50, total_steps=1000)
    reference = optax.linear_schedule(0.0, 1.0, 100)
    for step in (0, 1, 50, 99, 100, 500):
        assert float(schedule(step)) == pytest.approx(float(reference(step)))
    assert kl_weight_schedule() is None  # no warm-up: weight 1 throughout
    with pytest.raises(ValueError, match="not shorter than the training budget"):
        kl_weight_schedule(kl_warmup_steps=1000, total_steps=1000)


def test_warmup_weights_the_kl_in_the_loss(book, registry):
    from zoo.core.interfaces import Batch
    from zoo.core.assembly import assemble

    experiment = assemble(book.resolve("vae_mlp", registry, ["objective.kl_warmup_steps=100"]), registry)
    x = jnp.asarray(experiment.dataset.train.images[:8])
    rng = zoo.core.model.jax.random.key(0)
    loss_at_0, metrics = experiment.objective(experiment.model, Batch(x), rng, step=0)
    loss_at_50, _ = experiment.objective(experiment.model, Batch(x), rng, step=50)
    loss_after, _ = experiment.objective(experiment.model, Batch(x), rng)
    # weight 0: the loss is the reconstruction term; 0.5: half the KL; after the warm-up the -ELBO.
    assert float(loss_at_0) == pytest.approx(-float(metrics["log_likelihood"]), rel=1e-5)
    assert float(loss_at_50) == pytest.approx(-float(metrics["log_likelihood"]) + 0.5 * float(metrics["kl"]), rel=1e-5)
    assert float(loss_after) == pytest.approx(-float(metrics["elbo"]), rel=1e-5)


def test_free_bits_hold_the_kl_term(book, registry):
    from zoo.core.interfaces import Batch
    from zoo.core.assembly import assemble

    plain = assemble(book.resolve("vae_mlp", registry), registry)
    x = jnp.asarray(plain.dataset.train.images[:8])
    rng = zoo.core.model.jax.random.key(0)
    loss, metrics = plain.objective(plain.model, Batch(x), rng)
    kl = float(metrics["kl"])
    for free_bits, expected_kl_term in ((kl / 2, kl), (kl + 5.0, kl + 5.0)):
        held = assemble(book.resolve("vae_mlp", registry, [f"objective.free_bits={free_bits}"]), registry).objective
        assert float(held(plain.model, Batch(x), rng)[0]) == pytest.approx(
            -float(metrics["log_likelihood"]) + expected_kl_term, rel=1e-5
        )
    with pytest.raises(zoo.RecipeError, match="objective.free_bits: expected a float >= 0, got -1"):
        book.resolve("vae_mlp", registry, ["objective.free_bits=-1"])  # refused by the recipe check, naming the key
    with pytest.raises(ValueError, match="free_bits: expected nats >= 0, got -1.0"):
        objectives.elbo(free_bits=-1.0)  # and by the objective itself, when called directly


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.optimizer={name: adamx}",
            "train.optimizer.name: unknown optimizer 'adamx' (did you mean 'adamax'?); known: adabelief,",
        ),
        ("train.optimizer={name: adam, beta1: 0.9}", "train.optimizer.beta1: unknown option of optimizer 'adam'"),
        ("train.optimizer={name: adam, b1: fast}", "train.optimizer.b1: expected a number, got 'fast'"),
        (
            "train.schedule={name: cosine}",
            "train.schedule.name: unknown schedule 'cosine' (did you mean 'cosine_decay'?); known: constant,",
        ),
        (
            "train.schedule={name: linear, end_value: 0.0, transition_steps: -5}",
            "train.schedule.transition_steps: expected a number of steps >= 0, got -5",
        ),
        (
            "train.schedule={name: cosine_decay}",
            "train.schedule.decay_steps: missing (required by schedule 'cosine_decay')",
        ),
        ("train.early_stopping={patience: 0}", "train.early_stopping.patience: expected a positive number, got 0"),
        (
            "train.early_stopping={metric: accuracy}",
            "train.early_stopping.metric: expected one of 'elbo', 'reconstruction_error', 'kl'",
        ),
        (
            "train.validate_every=weekly",
            "train.validate_every: expected an int or one of 'epoch' or null, got 'weekly'",
        ),
        ("train.epochs=-1", "train.epochs: expected a positive number, got -1"),
    ],
)
def test_bad_training_settings_name_the_key(book, registry, override, message):
    with pytest.raises(zoo.RecipeError) as caught:
        book.resolve("vae_mlp", registry, [override])
    assert message in str(caught.value)


def test_early_stopping_update_on_a_scripted_curve():
    settings = EarlyStopping(patience=3, metric="elbo", grace=2)
    curve = [-10.0, -12.0, -11.0, -10.5, -9.0, -9.5, -8.5, -8.6, -8.0, -8.5, -8.6, -8.7]

    def run(settings):
        watch = early_stopping.Watch()
        for index, value in enumerate(curve):
            watch, _ = early_stopping.update(watch, value, step=index, settings=settings)
            if early_stopping.should_stop(watch, settings):
                return index, watch.best_step, watch.best

    # Without grace, -12, -11, -10.5 are three misses: stop at index 3. With a grace of two
    # validations, -12 does not count; the best is -8.0 at index 8 and three misses end at 11.
    assert run(EarlyStopping(patience=3)) == (3, 0, -10.0)
    assert run(settings) == (11, 8, -8.0)
    lower_is_better = EarlyStopping(patience=1, metric="reconstruction_error")
    watch, improved = early_stopping.update(
        early_stopping.Watch(best=5.0, best_step=1, seen=1), 4.0, 2, lower_is_better
    )
    assert improved and watch.best == 4.0


SCRIPTED = {2: -30.0, 4: -28.0, 6: -27.0, 8: -27.5, 10: -26.5, 12: -26.9, 14: -27.2, 16: -27.1, 18: -20.0}


def scripted_validation(monkeypatch, interrupt_at=None):
    """Validation returns the ELBO of SCRIPTED at each step (and can stop the process at one step)."""
    import zoo.training.loop as train_module

    from zoo.training.validation import (
        over_batches as real,
    )  # not train_module's, which an earlier patch may have replaced

    calls = {"step": 0}

    def fake(function, params, split, rng, batch_size, mesh=None):
        calls["step"] += 2
        if calls["step"] == interrupt_at:
            raise KeyboardInterrupt("killed")
        result = real(function, params, split, rng, batch_size, mesh)
        return {**result, "elbo": np.full_like(result["elbo"], SCRIPTED[calls["step"]])}

    monkeypatch.setattr(train_module, "over_batches", fake)
    return calls


def scripted_recipe(book, registry):
    return book.resolve(
        "vae_mlp",
        registry,
        [
            *TINY,  # the suite's small model: compiled once per session
            "train.steps=40",
            "train.validate_every=2",
            "train.log_every=2",
            "train.checkpoint_every=4",
            "train.early_stopping={patience: 3}",
        ],
    )


def test_early_stopping_stops_and_keeps_the_best_checkpoint(book, registry, tmp_path, monkeypatch):
    scripted_validation(monkeypatch)
    summary = train_and_evaluate(scripted_recipe(book, registry), tmp_path / "run", registry, progress=False)
    # Best -26.5 at step 10; 12, 14 and 16 bring no improvement: stop at 16 with patience 3.
    assert (summary["step"], summary["best_step"], summary["stopped_early"]) == (16, 10, True)
    assert Run.load(tmp_path / "run", registry).step == 10
    assert Run.load(tmp_path / "run", registry, checkpoint="newest").step == 16
    validation = [r for r in runs.read_metrics(tmp_path / "run") if r["split"] == "validation"]
    assert [r["step"] for r in validation] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert validation[-1]["best_step"] == 10 and validation[-1]["waited"] == 3


def test_resume_keeps_the_early_stopping_counter(book, registry, tmp_path, monkeypatch):
    recipe = scripted_recipe(book, registry)
    scripted_validation(monkeypatch, interrupt_at=14)  # killed at step 14, after the checkpoint of step 12
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)
    calls = scripted_validation(monkeypatch)
    calls["step"] = 12  # the resumed run validates again from step 14
    summary = train_and_evaluate(recipe, tmp_path / "run", registry, resume=True, progress=False)
    assert (summary["step"], summary["best_step"], summary["stopped_early"]) == (16, 10, True)
    steps = [(r["step"], r["split"]) for r in runs.read_metrics(tmp_path / "run")]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    # Resuming a run that stopped early trains no further.
    again = train_and_evaluate(recipe, tmp_path / "run", registry, resume=True, progress=False)
    assert again["step"] == 16


@pytest.mark.slow  # longer training and evaluation
def test_epoch_budget_and_eval_of_the_best_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    run_zoo(
        "train",
        "vae_mlp",
        "--workdir",
        str(workdir),
        "--quiet",
        "--set",
        "train.epochs=3",
        "--set",
        "train.batch_size=100",
        "--set",
        "train.validate_every=epoch",
        "--set",
        "encoder.hidden=[16]",
        "--set",
        "decoder.hidden=[16]",
    )
    records = runs.read_metrics(workdir)
    # 1137 training digits, batch 100: 11 steps an epoch, 33 steps, a validation per epoch.
    assert [r["step"] for r in records if r["split"] == "validation"] == [11, 22, 33]
    assert [r["epoch"] for r in records if r["split"] == "validation"] == [1.0, 2.0, 3.0]
    result = json.loads(run_zoo("eval", str(workdir), "-k", "10", "--limit", "20").stdout)
    best = max((r for r in records if r["split"] == "validation"), key=lambda r: r["elbo"])
    assert result["checkpoint"] == "best" and result["step"] == best["step"]
    assert json.loads(run_zoo("eval", str(workdir), "-k", "0", "--checkpoint", "newest").stdout)["step"] == 33


@pytest.mark.parametrize(
    ("variant", "overrides", "message"),
    [
        (
            "vampprior_paper",
            ["dataset={name: digits}", "condition={name: onehot_label}", "train.epochs=null"],
            "prior 'vampprior' is p(z) of an unconditional model",
        ),
        (
            "vae_mlp",
            ["objective.kl_warmup_steps=5000"],
            "kl_warmup_steps: the warm-up (5000 steps) is not shorter than the training budget (3000 steps)",
        ),
        (
            "vae_mlp",
            ["train.early_stopping={patience: 0}"],
            "vae_mlp.train.early_stopping.patience: expected a positive number, got 0",
        ),
        (
            "vae_mlp",
            ["train.schedule={name: exponential_decay, transition_steps: -1, decay_rate: 0.5}"],
            "vae_mlp.train.schedule.transition_steps: expected a number of steps >= 0, got -1",
        ),
    ],
)
def test_bad_protocol_settings_are_one_line_and_leave_no_run(tmp_path, capsys, variant, overrides, message):
    workdir = tmp_path / "run"
    sets = [arg for override in overrides for arg in ("--set", override)]
    assert_clean_error(zoo_in_process(capsys, "train", variant, "--workdir", workdir, *sets), message)
    assert not workdir.exists()


def test_a_checkpoint_of_the_earlier_format_is_still_read(book, registry, tmp_path):
    """Checkpoints written before they held the run's progress (the state alone) restore, progress empty."""
    import orbax.checkpoint as ocp

    from zoo.core.assembly import assemble
    from zoo.training.step import initial_state

    recipe = book.resolve("vae_mlp", registry, ["encoder.hidden=[8]", "decoder.hidden=[8]"])
    _, _, state = initial_state(assemble(recipe, registry).model, zoo.core.recipes.train_config(recipe))
    manager = checkpoints.checkpoint_manager(tmp_path)
    manager.save(7, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    step, restored, progress = checkpoints.restore_latest(checkpoints.checkpoint_manager(tmp_path), state)
    assert step == 7 and progress == {}
    np.testing.assert_array_equal(
        restored.params["decoder"]["out"]["bias"][...], state.params["decoder"]["out"]["bias"][...]
    )


def test_resume_forgets_best_checkpoints_the_resume_redoes(book, registry, tmp_path, monkeypatch):
    recipe = scripted_recipe(book, registry)
    scripted_validation(monkeypatch, interrupt_at=12)  # best at 10 saved; checkpoints at 4 and 8 only
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)
    assert checkpoints.restore_best_step(tmp_path / "run") == 10
    calls = scripted_validation(monkeypatch)
    calls["step"] = 8
    summary = train_and_evaluate(recipe, tmp_path / "run", registry, resume=True, progress=False)
    assert (summary["step"], summary["best_step"]) == (16, 10) and checkpoints.restore_best_step(tmp_path / "run") == 10


def test_clipping_with_normalized_gradients_is_refused(book, registry):
    with pytest.raises(zoo.RecipeError, match="vae_mlp.train.clip_grad_norm: has no effect with train.normalize_grad"):
        book.resolve("vae_mlp", registry, ["train.clip_grad_norm=1.0", "train.normalize_grad=true"])


@pytest.mark.slow  # longer training
def test_an_objective_that_is_no_elbo_keeps_its_best_checkpoint_by_its_own_loss(book, registry, tmp_path):
    """WAE-MMD's deterministic encoder has no ELBO worth choosing by: the best checkpoint is the
    one with the lowest validation loss of the objective itself, which validation records."""
    from zoo.training.loop import selection_metric

    recipe = book.resolve(
        "wae_mmd",
        registry,
        ["encoder.hidden=[16]", "decoder.hidden=[16]", "train.steps=60", "train.checkpoint_every=10"],
    )
    summary = train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)
    validation = [r for r in runs.read_metrics(tmp_path / "run") if r["split"] == "validation"]
    losses = {r["step"]: r["loss"] for r in validation}
    assert len(losses) == 6 and summary["best_step"] == min(losses, key=losses.get)
    assert Run.load(tmp_path / "run", registry).step == summary["best_step"]
    for variant in ("wae_mmd", "info_vae", "quadrant_gsnn"):
        objective = objectives_of(book, registry, variant)
        assert selection_metric(objective) == "loss", variant
    assert selection_metric(objectives_of(book, registry, "vae_mlp")) == "elbo"


def objectives_of(book, registry, variant):
    from zoo.core.assembly import assemble

    return assemble(book.resolve(variant, registry), registry).objective
