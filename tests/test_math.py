"""Checks against mathematics, not against the code's own output.

The linear Gaussian model p(z) = N(0, I), p(x | z) = N(W z + b, s^2 I) has the
exact marginal p(x) = N(b, W W^T + s^2 I); its posterior is Gaussian with
covariance (I + W^T W / s^2)^-1, diagonal when W's columns are orthogonal.
"""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import multivariate_normal

import zoo
import zoo.core.objectives
from zoo.core.interfaces import Batch

LATENT, DATA, SCALE = 2, 5, 0.7


def linear_gaussian_model(registry, seed=0):
    """MLP encoder and decoder with no hidden layer (linear maps), fixed-scale Gaussian."""
    recipe = {
        "latent_dim": LATENT,
        "encoder": {"name": "mlp", "hidden": ()},
        "decoder": {"name": "mlp", "hidden": ()},
        "prior": {"name": "standard_normal"},
        "likelihood": {"name": "gaussian_fixed", "scale": SCALE},
    }
    return zoo.build_model(recipe, registry, x_shape=(DATA,), c_shape=None, rngs=nnx.Rngs(seed))


def set_decoder(model, weights, bias):
    # nnx.Linear computes x @ kernel + bias, so the kernel is W transposed.
    model.decoder.out.kernel[...] = jnp.asarray(weights.T, jnp.float32)
    model.decoder.out.bias[...] = jnp.asarray(bias, jnp.float32)


def exact_log_marginal(x, weights, bias):
    covariance = weights @ weights.T + SCALE**2 * np.eye(DATA)
    return multivariate_normal(mean=bias, cov=covariance).logpdf(x)


def orthogonal_weights(rng):
    q, _ = np.linalg.qr(rng.normal(size=(DATA, LATENT)))
    return q * np.array([1.5, 0.8])  # orthogonal columns of different lengths


def set_encoder_to_posterior(model, weights, bias, widen=1.0, shift=0.0):
    """q(z|x) = the exact posterior, its scale multiplied by `widen` and its mean moved by `shift`.

    Exact posterior: covariance S = (I + W^T W / s^2)^-1 (diagonal here), mean S W^T (x - b) / s^2.
    """
    covariance = np.linalg.inv(np.eye(LATENT) + weights.T @ weights / SCALE**2)
    gain = covariance @ weights.T / SCALE**2
    head = model.encoder.head
    head.loc.kernel[...] = jnp.asarray(gain.T, jnp.float32)
    head.loc.bias[...] = jnp.asarray(-gain @ bias + shift, jnp.float32)
    head.log_scale.kernel[...] = jnp.zeros((DATA, LATENT))
    head.log_scale.bias[...] = jnp.asarray(0.5 * np.log(np.diag(covariance)) + np.log(widen), jnp.float32)


@pytest.fixture
def problem(registry):
    rng = np.random.default_rng(0)
    weights, bias = orthogonal_weights(rng), rng.normal(size=DATA) * 0.3
    model = linear_gaussian_model(registry)
    set_decoder(model, weights, bias)
    # An imperfect proposal: wider than the posterior and off-centre, as a trained encoder would be.
    set_encoder_to_posterior(model, weights, bias, widen=1.6, shift=0.3)
    z = rng.normal(size=(64, LATENT))
    x = z @ weights.T + bias + SCALE * rng.normal(size=(64, DATA))
    return model, jnp.asarray(x, jnp.float32), weights, bias


def test_closed_form_kl_matches_monte_carlo():
    q = distrax.MultivariateNormalDiag(jnp.array([0.3, -1.2, 2.0]), jnp.array([0.5, 1.7, 0.9]))
    p = distrax.MultivariateNormalDiag(jnp.array([-0.4, 0.1, 1.0]), jnp.array([1.3, 0.6, 2.2]))
    z = q.sample(seed=jax.random.key(0), sample_shape=(400_000,))
    monte_carlo = jnp.mean(q.log_prob(z) - p.log_prob(z))
    assert float(zoo.kl_divergence(q, p, z[0])) == pytest.approx(float(monte_carlo), abs=0.02)


def test_kl_falls_back_to_monte_carlo_when_distrax_has_no_closed_form():
    q = distrax.Laplace(0.0, 1.0)  # distrax registers no KL(Laplace || Normal)
    p = distrax.Normal(0.0, 1.0)
    z = jnp.array(0.5)
    assert float(zoo.kl_divergence(q, p, z)) == pytest.approx(float(q.log_prob(z) - p.log_prob(z)))


def test_importance_sampled_estimate_matches_exact_marginal(problem):
    model, x, weights, bias = problem
    exact = exact_log_marginal(np.asarray(x), weights, bias)
    estimate = model.log_likelihood(x, None, jax.random.key(1), num_samples=5000, chunk_size=500)
    np.testing.assert_allclose(estimate, exact, atol=0.05)
    assert float(np.mean(np.asarray(estimate) - exact)) == pytest.approx(0.0, abs=0.01)


def test_estimate_is_at_least_the_elbo_and_tightens_with_k(problem):
    model, x, weights, bias = problem
    exact = float(np.mean(exact_log_marginal(np.asarray(x), weights, bias)))
    keys = jax.random.split(jax.random.key(2), 50)
    elbo = float(jnp.mean(jax.vmap(lambda key: model.elbo(x, None, key))(keys)))
    one_sample = float(jnp.mean(jax.vmap(lambda key: model.log_likelihood(x, None, key, num_samples=1))(keys)))
    bounds = [
        float(jnp.mean(model.log_likelihood(x, None, keys[0], num_samples=k, chunk_size=100))) for k in (10, 100, 1000)
    ]
    assert one_sample == pytest.approx(elbo, abs=0.1)  # K = 1 estimates the ELBO
    assert elbo < bounds[0] < bounds[1] < bounds[2] <= exact + 0.01
    assert exact - bounds[2] < 0.01 < 0.1 < exact - elbo


def test_chunking_does_not_change_the_estimate(problem):
    model, x, _, _ = problem
    whole = model.log_likelihood(x, None, jax.random.key(3), num_samples=300, chunk_size=300)
    assert whole.shape == (x.shape[0],)
    # 300 samples in chunks of 70: 5 chunks, the last one partly masked off.
    chunked = model.log_likelihood(x, None, jax.random.key(3), num_samples=300, chunk_size=70)
    assert float(jnp.mean(chunked)) == pytest.approx(float(jnp.mean(whole)), abs=0.05)


def test_with_the_exact_posterior_every_bound_equals_log_p_x(registry):
    rng = np.random.default_rng(1)
    weights, bias = orthogonal_weights(rng), rng.normal(size=DATA) * 0.3
    model = linear_gaussian_model(registry)
    set_decoder(model, weights, bias)
    set_encoder_to_posterior(model, weights, bias)
    x = jnp.asarray(rng.normal(size=(16, DATA)), jnp.float32)
    exact = exact_log_marginal(np.asarray(x), weights, bias)
    key = jax.random.key(4)
    # Each importance weight p(x, z) / q(z | x) is p(x) itself: exact with any number of samples.
    np.testing.assert_allclose(model.log_likelihood(x, None, key, num_samples=3), exact, atol=2e-3)
    loss, _ = zoo.core.objectives.iwae(num_samples=4)(model, Batch(x), key)
    assert float(loss) == pytest.approx(-float(np.mean(exact)), abs=2e-3)
    # The ELBO (analytic KL) equals log p(x) in expectation only; its one-sample value varies.
    elbos = jax.vmap(lambda key: model.elbo(x, None, key))(jax.random.split(key, 400))
    np.testing.assert_allclose(jnp.mean(elbos, axis=0), exact, atol=0.15)


def test_prior_proposal_estimate_matches_exact_marginal(problem):
    # With the prior as proposal the weights are p(x | z): the estimator for models trained without an encoder.
    model, x, weights, bias = problem
    exact = exact_log_marginal(np.asarray(x), weights, bias)
    estimate = model.log_likelihood(x, None, jax.random.key(5), num_samples=20000, chunk_size=2000, proposal="prior")
    assert float(np.mean(np.asarray(estimate) - exact)) == pytest.approx(0.0, abs=0.03)
    with pytest.raises(ValueError, match="unknown proposal 'prio'"):
        model.log_likelihood(x, None, jax.random.key(5), num_samples=10, proposal="prio")
