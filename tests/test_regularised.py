"""RAE-L2 and RAE-GP and the Gaussian mixture fitted to their codes (plugins/families/regularised.py),
each against an independent computation: the loss terms in numpy, the Jacobian estimator against
the exact Jacobian, EM against a known mixture; and what their reports say is not defined."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo.core.assembly import assemble
from zoo.core.interfaces import Batch, Split
from zoo.evaluation.evaluate import evaluate
from zoo.evaluation.trained_run import fit_after_training
from vae_zoo_plugins.families.regularised import decoder_jacobian_norm, fit_gmm, rae_l2

SMALL = ["encoder.hidden=[16]", "decoder.hidden=[16]", "latent_dim=3", "prior.num_components=2"]


@pytest.fixture(scope="module")
def rae(book, registry):
    experiment = assemble(book.resolve("rae_l2", registry, SMALL), registry)
    train = experiment.dataset.train
    x, c = experiment.condition.split(jnp.asarray(train.images[:8]), jnp.asarray(train.labels[:8]))
    return experiment, Batch(x, c)


def test_the_rae_l2_loss_is_its_three_terms_in_numpy(rae):
    experiment, batch = rae
    model = experiment.model
    z = np.asarray(model.encode(batch.x).mean(), np.float64)
    logits = np.asarray(model.decoder(jnp.asarray(z, jnp.float32), None), np.float64)[..., 0]
    x = np.asarray(batch.x, np.float64)
    bernoulli = np.sum(x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits), axis=(1, 2, 3))
    weights = sum(np.sum(np.square(np.asarray(a, np.float64))) for a in jax.tree.leaves(nnx.state(model.decoder)))
    expected = -bernoulli.mean() + 0.3 * np.mean(0.5 * np.sum(z**2, axis=1)) + 0.01 * weights
    loss, _ = rae_l2(beta=0.3, decoder_weight=0.01)(model, batch, jax.random.key(0))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_the_gradient_penalty_estimates_the_squared_jacobian_norm(rae):
    experiment, batch = rae
    model = experiment.model
    z = model.encode(batch.x).mean()[:2]
    exact = [
        np.sum(np.square(np.asarray(jax.jacfwd(lambda v: model.decoder(v[None], None)[0])(row), np.float64)))
        for row in z
    ]
    keys = jax.random.split(jax.random.key(1), 4000)
    draws = np.asarray(jax.vmap(lambda key: decoder_jacobian_norm(model, z, None, key))(keys), np.float64)
    # Unbiased: the mean of 4000 draws within 4 standard errors of the exact norm.
    standard_errors = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - exact) < 4 * standard_errors), (draws.mean(axis=0), exact)


def test_em_recovers_a_known_mixture():
    generator = np.random.default_rng(0)
    truth = np.array([[-4.0, 0.0], [4.0, 1.0]])
    labels = generator.random(4000) < 0.3
    codes = np.where(labels[:, None], truth[0], truth[1]) + generator.normal(size=(4000, 2)) * [0.5, 1.0]
    log_weights, means, scales = fit_gmm(codes, 2)
    order = np.argsort(means[:, 0])
    np.testing.assert_allclose(np.exp(log_weights[order]), [0.3, 0.7], atol=0.03)
    np.testing.assert_allclose(means[order], truth, atol=0.1)
    np.testing.assert_allclose(scales[order], [[0.5, 1.0], [0.5, 1.0]], atol=0.06)


def test_the_prior_is_fitted_to_the_training_codes_after_training(rae):
    experiment, _ = rae
    graphdef, params = nnx.split(experiment.model)
    fitted = nnx.merge(graphdef, fit_after_training(graphdef, params, experiment))
    assert not np.allclose(np.asarray(fitted.prior.locs[...]), 0.0)  # N(0, I) no more
    samples = fitted.sample(jax.random.key(0), num_samples=6)
    assert samples.shape == (6, *experiment.model.x_shape) and np.all(np.isfinite(np.asarray(samples)))


def test_a_sampler_fitted_on_a_run_with_no_training_split_is_refused_naming_the_prior(rae):
    experiment, _ = rae
    train = experiment.dataset.train
    empty = Split(train.images[:0], train.labels[:0])
    bare = dataclasses.replace(experiment, dataset=dataclasses.replace(experiment.dataset, train=empty))
    graphdef, params = nnx.split(experiment.model)
    with pytest.raises(zoo.ZooError, match=r"^prior: 'fitted_gmm' is a sampler fitted .* no training split") as raised:
        fit_after_training(graphdef, params, bare)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("variant", ["rae_l2", "rae_gp"])
def test_the_reports_say_the_elbo_and_likelihood_are_not_defined(book, registry, variant):
    experiment = assemble(book.resolve(variant, registry, SMALL), registry)
    graphdef, params = nnx.split(experiment.model)
    test = experiment.dataset.test
    metrics = evaluate(
        graphdef,
        params,
        experiment.condition,
        Split(test.images[:20], test.labels[:20]),
        jax.random.key(0),
        num_samples=5,
        objective=experiment.objective,
    )
    assert {m for m in ("elbo", "kl", "log_likelihood") if metrics[m] is None} == {"elbo", "kl", "log_likelihood"}
    assert "deterministic" in metrics["log_likelihood_undefined"]
    assert metrics["reconstruction_error"] is not None
