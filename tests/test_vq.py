"""The VQ-VAE: the quantiser picks the nearest code, the straight-through sample passes the
decoder's gradient to the encoder unchanged, perplexity counts codes in use, and evaluation
reports the importance-sampled log-likelihood as not defined."""

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import zoo
from tests.conftest import VQ_RUN
from vae_zoo_plugins.families.vq import CodePrior, QuantisedPosterior, code_perplexity, uniform_log_probs
from zoo.evaluation.evaluate import perplexity


def test_quantiser_picks_the_nearest_code_at_every_position():
    rng = np.random.default_rng(0)
    codebook, z_e = rng.normal(size=(7, 3)), rng.normal(size=(5, 6)) * 1.5
    q = QuantisedPosterior(jnp.asarray(z_e, jnp.float32), jnp.asarray(codebook, jnp.float32))
    groups = z_e.reshape(5, 2, 3)
    expected = np.argmin(((groups[:, :, None, :] - codebook) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(np.asarray(q.codes), expected)
    np.testing.assert_allclose(np.asarray(q.quantised), codebook[expected].reshape(5, 6), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(q.sample(seed=jax.random.key(0))), codebook[expected].reshape(5, 6), rtol=1e-5, atol=1e-6
    )
    assert q.batch_shape == (5,) and q.event_shape == (6,)
    # The point mass and the uniform prior: KL = positions * log K, log q = 0 at the codes.
    prior = CodePrior(jnp.asarray(codebook, jnp.float32), uniform_log_probs(2, 7), 5)
    np.testing.assert_allclose(np.asarray(q.kl_divergence(prior)), 2 * math.log(7), rtol=1e-6)
    assert np.all(np.asarray(q.log_prob(q.quantised)) == 0) and np.all(
        np.isinf(np.asarray(q.log_prob(q.quantised + 0.1)))
    )
    draws = prior.sample(seed=jax.random.key(1), sample_shape=(3,))
    np.testing.assert_allclose(np.asarray(prior.log_prob(draws)), -2 * math.log(7), rtol=1e-6)


def test_straight_through_passes_the_gradient_unchanged_and_the_losses_move_their_side():
    rng = np.random.default_rng(1)
    codebook, z_e = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32), jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)

    def through_sample(z_e, codebook):
        return jnp.sum(weights * QuantisedPosterior(z_e, codebook).sample(seed=jax.random.key(0)))

    to_encoder, to_codebook = jax.grad(through_sample, argnums=(0, 1))(z_e, codebook)
    np.testing.assert_allclose(to_encoder, weights, rtol=1e-6)  # d/dz_e of z_e + sg(z_q - z_e) is the identity
    assert np.all(np.asarray(to_codebook) == 0)
    q = QuantisedPosterior(z_e, codebook)
    codebook_to_encoder, codebook_to_codes = jax.grad(
        lambda a, b: QuantisedPosterior(a, b).codebook_loss().sum(), argnums=(0, 1)
    )(z_e, codebook)
    commit_to_encoder, commit_to_codes = jax.grad(
        lambda a, b: QuantisedPosterior(a, b).commitment_loss().sum(), argnums=(0, 1)
    )(z_e, codebook)
    assert np.all(np.asarray(codebook_to_encoder) == 0) and np.all(np.asarray(commit_to_codes) == 0)
    np.testing.assert_allclose(commit_to_encoder, 2 * (z_e - q.quantised), rtol=1e-5)
    groups = np.asarray(z_e).reshape(-1, 2)
    expected = np.zeros((6, 2))
    for code, group in zip(np.asarray(q.codes).reshape(-1), groups):
        expected[code] += 2 * (np.asarray(codebook)[code] - group)
    np.testing.assert_allclose(codebook_to_codes, expected, rtol=1e-5, atol=1e-6)


def test_perplexity_of_uniform_usage_is_the_number_of_codes():
    uniform = jnp.tile(jnp.arange(16), 5).reshape(10, 8)
    np.testing.assert_allclose(float(code_perplexity(uniform, 32)), 16.0, rtol=1e-5)  # 16 of 32 codes used equally
    np.testing.assert_allclose(float(code_perplexity(jnp.tile(jnp.arange(32), 2).reshape(8, 8), 32)), 32.0, rtol=1e-5)
    np.testing.assert_allclose(float(code_perplexity(jnp.zeros((4, 2), jnp.int32), 32)), 1.0)
    np.testing.assert_allclose(perplexity(np.full(32, 7)), 32.0, rtol=1e-12)
    np.testing.assert_allclose(perplexity(np.array([3, 1, 0])), np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))


def small_vq(book, registry, *overrides):
    from zoo.core.assembly import assemble

    return assemble(
        book.resolve("vq_vae", registry, ["encoder.hidden=[16]", "decoder.hidden=[16]", *overrides]), registry
    )


def test_evaluation_reports_the_log_likelihood_as_not_defined(book, registry):
    from flax import nnx

    from zoo.evaluation.evaluate import evaluate
    from zoo.core.interfaces import Split

    experiment = small_vq(book, registry)
    graphdef, params = nnx.split(experiment.model)
    test = experiment.dataset.test
    metrics = evaluate(
        graphdef,
        params,
        experiment.condition,
        Split(test.images[:40], test.labels[:40]),
        jax.random.key(0),
        num_samples=10,
        proposals=("posterior", "prior"),
    )
    assert metrics["log_likelihood"] is None and metrics["log_likelihood_prior"] is None
    assert "point mass" in metrics["log_likelihood_undefined"]
    assert 1.0 <= metrics["codebook_perplexity"] <= 64
    np.testing.assert_allclose(metrics["kl"], 4 * math.log(64), rtol=1e-5)  # 4 positions, uniform over 64 codes
    with pytest.raises(zoo.ModelBuildError, match="not defined for this model"):
        experiment.model.log_likelihood(jnp.asarray(test.images[:2]), None, jax.random.key(0), num_samples=4)


def test_report_prints_not_defined_for_a_metric_every_run_left_undefined():
    from zoo.evaluation.report import table

    records = [
        {"dataset": "digits", "task": "unconditional", "variant": "vq_vae", "elbo": -30.0, "log_likelihood": None},
        {"dataset": "digits", "task": "unconditional", "variant": "vae_mlp", "elbo": -25.0, "log_likelihood": -24.0},
    ]
    rows = {
        line.split("|")[1].strip(): line
        for line in table(records).splitlines()
        if line.startswith("| vq") or line.startswith("| vae")
    }
    assert "not defined" in rows["vq_vae"] and "not defined" not in rows["vae_mlp"]


def test_discrete_and_continuous_parts_are_not_mixed(book, registry):
    with pytest.raises(
        zoo.ModelBuildError, match="encoder 'vq_mlp' gives a discrete latent but prior 'standard_normal'"
    ):
        small_vq(book, registry, "prior={name: standard_normal}")
    with pytest.raises(zoo.ModelBuildError, match="objective 'iwae' works with a continuous latent"):
        small_vq(book, registry, "objective={name: iwae}", "train.parameter_groups={}")  # no EMA codebook group
    with pytest.raises(zoo.ModelBuildError, match="objective 'vq' works with a discrete latent"):
        small_vq(
            book,
            registry,
            "encoder={name: mlp, hidden: [16]}",
            "prior={name: standard_normal}",
            "objective={name: vq}",  # the codebook loss: an EMA group would find no codebook first
            "train.parameter_groups={}",
        )


def test_code_prior_scores_and_draws_each_position_from_its_own_categorical():
    rng = np.random.default_rng(2)
    codebook = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    probabilities = rng.dirichlet(np.ones(5), size=3)  # 3 positions
    prior = CodePrior(codebook, jnp.log(jnp.asarray(probabilities, jnp.float32)), 4)
    codes = rng.integers(0, 5, size=(6, 3))
    expected = np.log(probabilities[np.arange(3), codes]).sum(-1)
    np.testing.assert_allclose(np.asarray(prior.code_log_prob(jnp.asarray(codes))), expected, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(prior.log_prob(codebook[codes].reshape(6, 6))), expected, rtol=1e-5
    )  # scored from the code vectors themselves
    draws = np.asarray(prior.sample(seed=jax.random.key(3), sample_shape=(5000,))).reshape(-1, 3, 2)
    drawn = np.argmin(((draws[:, :, None, :] - np.asarray(codebook)) ** 2).sum(-1), axis=-1)  # (N, 3)
    frequencies = np.stack([np.bincount(drawn[:, p], minlength=5) / len(drawn) for p in range(3)])
    np.testing.assert_allclose(frequencies, probabilities, atol=0.02)  # 20,000 draws per position


def test_fitted_prior_is_the_smoothed_code_frequencies_of_the_training_split(vq_run, tmp_path):
    """Run.load fits `fitted_codebook` to the codes the trained encoder chooses on the (once
    binarized) training split: log((n_k + 1) / (N + K)) at every position."""
    from zoo.core.data import evaluation_split

    shutil.copytree(vq_run, tmp_path / "vq")  # the session's vq_vae (tests/conftest.py); evaluate records in it
    run = zoo.load(tmp_path / "vq")
    train = evaluation_split(run.experiment.dataset, "train")
    codes = np.asarray(run.model.encode(jnp.asarray(train.images), None).codes)  # (N, 4)
    counts = np.stack([np.bincount(codes[:, p], minlength=64) for p in range(4)])
    fitted = np.asarray(run.model.prior.code_log_probs[...])
    np.testing.assert_allclose(fitted, np.log((counts + 1) / (len(codes) + 64)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(fitted, -math.log(64))  # not the uniform it trained with
    evaluation = run.evaluate(split="test", num_samples=0)
    assert evaluation["kl"] < 4 * math.log(64)  # the fitted prior gives the codes more mass than uniform
    assert run.sample(8).shape == (8, 8, 8, 1)


def test_one_sgd_step_of_the_ema_loss_is_the_ema_update_and_restarts_unused_codes():
    # Codebook of 3 codes in 2-D; z_e's four positions sit next to codes 0 and 1, none next to code 2.
    from vae_zoo_plugins.families.vq import codebook_ema_loss

    codebook = jnp.array([[0.0, 0.0], [1.0, 1.0], [9.0, -9.0]])
    z_e = jnp.array([[0.1, 0.0, 0.3, 0.2], [1.2, 0.8, 0.9, 1.1]])  # two examples, two positions of 2
    decay, restart = 0.9, 0.25
    rng = jax.random.key(0)

    def loss_of(book):
        return codebook_ema_loss(QuantisedPosterior(z_e, book), rng, decay, restart)

    stepped = codebook - jax.grad(loss_of)(codebook)  # plain SGD at learning rate 1
    groups = np.asarray(z_e).reshape(-1, 2)
    # Code 0 owns positions (0.1, 0) and (0.3, 0.2); code 1 owns (1.2, 0.8) and (0.9, 1.1): numpy EMA by hand.
    np.testing.assert_allclose(stepped[0], decay * codebook[0] + (1 - decay) * groups[[0, 1]].mean(0), atol=1e-6)
    np.testing.assert_allclose(stepped[1], decay * codebook[1] + (1 - decay) * groups[[2, 3]].mean(0), atol=1e-6)
    # Code 2 is used by nobody: it moves a quarter of the way to one of the encoder outputs.
    moved = (np.asarray(stepped[2]) - np.asarray(codebook[2])) / restart + np.asarray(codebook[2])
    assert any(np.allclose(moved, g, atol=1e-5) for g in groups)


def test_ema_codebook_trains_in_its_own_group_with_every_code_in_use(book, registry, vq_run):
    # vq_vae trains its codebook by EMA with restarts: after a short run on the digits (the session's
    # vq_run, 300 steps) nearly every code is used on the test split (with the codebook loss, 9 of 64
    # were after 5 Fashion-MNIST epochs).
    recipe = book.resolve("vq_vae", registry, VQ_RUN)
    assert recipe["train"]["parameter_groups"]["codebook_ema"]["optimizer"] == {"name": "sgd"}
    assert yaml.safe_load((vq_run / "recipe.yaml").read_text()) == json.loads(json.dumps(recipe))
    result = zoo.load(vq_run).evaluate(num_samples=0, record=False)
    assert result["codebook_usage"] >= 0.9, result["codebook_usage"]
    assert result["codebook_perplexity"] > 0.5 * 64
