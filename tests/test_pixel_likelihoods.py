"""The discretized logistic mixture and the continuous Bernoulli against independent references
(scipy's logistic CDF, numerical integration), and bits/dim against hand-computed cases."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from vae_zoo_plugins.base import pixel_likelihoods as pl
from zoo.evaluation.bits import bits_per_dim, with_bits_per_dim

VALUES = np.arange(256) / 255.0


def mixture_params(components: int, pixels: int, seed: int, spread: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(pixels, components))
    means = rng.uniform(-1.2, 1.2, size=(pixels, components))
    log_scales = rng.uniform(-6.0, 0.5, size=(pixels, components)) * spread
    return np.concatenate([logits, means, log_scales], axis=-1)


@pytest.mark.parametrize("components", [1, 3, 10])
def test_the_256_probabilities_of_a_pixel_sum_to_one(components):
    params = mixture_params(components, 7, seed=components)
    likelihood = pl.make_discretized_logistic_mixture(components)
    assert likelihood.params_per_dim == 3 * components
    # Seven pixels of one image; every value of each, one image per value.
    distribution = likelihood(jnp.asarray(np.broadcast_to(params, (256, 7, 3 * components))))
    log_p = np.asarray(distribution._flat.distribution.log_prob(jnp.asarray(np.repeat(VALUES[:, None], 7, 1))))
    np.testing.assert_allclose(np.exp(log_p.astype(np.float64)).sum(axis=0), 1.0, atol=2e-4)


def test_the_probabilities_are_the_logistic_mass_of_each_bin():
    params = mixture_params(3, 5, seed=7)
    logits, means, log_scales = np.split(params, 3, axis=-1)
    log_scales = np.maximum(log_scales, pl.MIN_LOG_SCALE)
    weights = special.softmax(logits, axis=-1)
    y = 2 * VALUES - 1
    upper = np.where(VALUES == 1, np.inf, y + 1 / 255)[:, None, None]
    lower = np.where(VALUES == 0, -np.inf, y - 1 / 255)[:, None, None]
    cdf = lambda edge: stats.logistic.cdf(edge, loc=means, scale=np.exp(log_scales))
    reference = np.sum(weights * (cdf(upper) - cdf(lower)), axis=-1)  # (256, 5)
    mixture = pl.DiscretizedLogisticMixture(*map(jnp.asarray, np.split(params, 3, axis=-1)))
    ours = np.exp(np.asarray(mixture.log_prob(jnp.asarray(np.broadcast_to(VALUES[:, None], (256, 5)))), np.float64))
    mask = reference > 1e-4  # where the mass is tiny PixelCNN++ uses the density at the centre
    np.testing.assert_allclose(ours[mask], reference[mask], rtol=2e-3)


def test_samples_are_pixel_values_with_the_given_probabilities():
    params = mixture_params(2, 1, seed=3, spread=0.3)
    mixture = pl.DiscretizedLogisticMixture(*map(jnp.asarray, np.split(params, 3, axis=-1)))
    draws = np.asarray(mixture.sample(seed=jax.random.key(0), sample_shape=(40000,)))[:, 0]
    np.testing.assert_allclose(draws * 255, np.round(draws * 255), atol=1e-3)
    probabilities = np.exp(np.asarray(mixture.log_prob(jnp.asarray(VALUES[:, None])))[:, 0])
    expected_mean = float(np.sum(probabilities * VALUES))
    assert abs(draws.mean() - expected_mean) < 0.01


LOGITS = [-25.0, -4.0, -0.7, -1e-4, 0.0, 2e-3, 0.3, 5.0, 25.0]


@pytest.mark.parametrize("logit", LOGITS)
def test_the_continuous_bernoulli_normaliser_matches_numerical_integration(logit):
    lam = special.expit(logit)
    unnormalised, _ = integrate.quad(lambda x: lam**x * (1 - lam) ** (1 - x), 0.0, 1.0, epsabs=1e-13, epsrel=1e-11)
    ours = float(pl.continuous_bernoulli_log_normaliser(jnp.float32(logit)))
    assert ours == pytest.approx(-math.log(unnormalised), rel=1e-5, abs=1e-5)
    density = lambda x: math.exp(float(pl.ContinuousBernoulli(jnp.float32(logit)).log_prob(jnp.float32(x))))
    total, _ = integrate.quad(density, 0.0, 1.0)
    assert total == pytest.approx(1.0, abs=1e-4)
    mean, _ = integrate.quad(lambda x: x * density(x), 0.0, 1.0)
    assert float(pl.ContinuousBernoulli(jnp.float32(logit)).mean()) == pytest.approx(mean, abs=1e-4)


def test_continuous_bernoulli_samples_follow_its_mean():
    logits = jnp.asarray([-3.0, 0.0, 1.5])
    distribution = pl.ContinuousBernoulli(logits)
    draws = np.asarray(distribution.sample(seed=jax.random.key(1), sample_shape=(50000,)))
    assert draws.min() >= 0 and draws.max() <= 1
    np.testing.assert_allclose(draws.mean(axis=0), np.asarray(distribution.mean()), atol=0.005)


def test_bits_per_dim_by_hand():
    # A probability of the 256 values: -log p / (D ln 2). 784 pixels at 1000 nats: 1000 / (784 * 0.693147) = 1000 / 543.4272.
    assert bits_per_dim(-1000.0, 784, "8bit") == pytest.approx(1.840172, abs=1e-6)
    # A uniform density on [0, 1] (log p = 0) spreads each pixel evenly over its 255 bins of width
    # 1/255: log2(255) = 7.994353 bits, as a uniform probability of the values would give 8.
    assert bits_per_dim(0.0, 3072, "unit_interval") == pytest.approx(7.994353, abs=1e-6)
    # A density of e^3 per dimension (log p = 3 D): (ln 255 - 3) / ln 2 = (5.541264 - 3) / 0.693147 = 3.666274.
    assert bits_per_dim(3.0 * 12, 12, "real") == pytest.approx(3.666274, abs=1e-5)
    assert bits_per_dim(-5.0, 12, "binary") is None
    # The continuous Bernoulli with logit 0 is that uniform density.
    uniform = pl.make_continuous_bernoulli()(jnp.zeros((1, 4, 4, 3, 1)))
    log_p = float(uniform.log_prob(jnp.full((1, 4, 4, 3), 0.3))[0])
    assert log_p == pytest.approx(0.0, abs=1e-6)
    metrics = with_bits_per_dim({"elbo": -20.0, "log_likelihood": -12.0}, 256, 48, "8bit")
    assert metrics["bits_per_dim_of"] == "log_likelihood"
    assert metrics["bits_per_dim"] == pytest.approx(12.0 / (48 * math.log(2)))
    assert "bits_per_dim" not in with_bits_per_dim({"elbo": -20.0}, None, 48, "8bit")  # not 8-bit data


def test_importance_sampling_of_large_colour_outputs_draws_fewer_samples_at_once():
    # 2500 decoder rows a chunk for every 28x28 grey model, as before; a 64x64x3 image with a
    # 5-component mixture (15 values a pixel) asked XLA for 35.6 GB that way, so it draws one
    # sample of the batch at a time: 100 rows of 184,320 values, 18.4 M values.
    from zoo.core.model import DECODER_VALUES_PER_CHUNK, samples_per_chunk

    assert samples_per_chunk(100, (28, 28, 1), 1) == 25
    assert samples_per_chunk(100, (28, 28, 1), 4) == 25
    assert samples_per_chunk(100, (64, 64, 3), pl.DiscretizedLogisticMixtureLikelihood(5).params_per_dim) == 1
    per_row = 32 * 32 * 3 * 15
    assert samples_per_chunk(4, (32, 32, 3), 15) == DECODER_VALUES_PER_CHUNK // (4 * per_row)  # 42: by values, not rows
    assert samples_per_chunk(5000, (8, 8, 1), 1) == 1  # never none
