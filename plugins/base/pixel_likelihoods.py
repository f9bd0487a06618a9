"""Likelihoods for 8-bit and [0, 1] images: the discretized logistic mixture and the continuous
Bernoulli.

- `discretized_logistic_mixture` (Salimans et al. 2017, PixelCNN++; the form VDVAE uses): each
  pixel value k / 255 gets the mass a mixture of `components` logistics puts on its bin of
  width 2/255 in [-1, 1], the two end bins reaching to -inf and +inf, so the 256 probabilities
  sum to exactly 1. Every colour channel has its own mixture (PixelCNN++'s linear coupling of
  the channels within a pixel is left out: the decoder already sees the whole image).
- `continuous_bernoulli` (Loaiza-Ganem and Cunningham 2019): the Bernoulli's log_prob on [0, 1]
  plus its normaliser log C(lambda), which a Bernoulli on grey pixels leaves out. With logits l,
  C = l / tanh(l / 2) (2 at l = 0).

Each declares `data_kind` (zoo.core.interfaces.DATA_KINDS): "8bit" for a probability of each of
the 256 values, "unit_interval" for a density on [0, 1]; evaluation turns either into bits/dim.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import distrax
import jax
import jax.numpy as jnp

import zoo
from zoo import AtLeast
from vae_zoo_plugins.base.likelihoods import FlatEvents, _independent

HALF_BIN = 1.0 / 255.0  # half a bin's width in [-1, 1]
MIN_LOG_SCALE = -7.0  # as PixelCNN++: a logistic narrower than this is a point mass on its bin anyway
SMALL_LOGIT = 1e-3  # below it the continuous Bernoulli's normaliser and mean are taken from their series


class DiscretizedLogisticMixture(distrax.Distribution):
    """Per dimension, a mixture of logistics discretized to the 256 values k / 255.

    `logits`, `means`, `log_scales`: (..., K); means and scales in [-1, 1] units (x = 2k/255 - 1)."""

    def __init__(self, logits: jax.Array, means: jax.Array, log_scales: jax.Array):
        self.logits, self.means = logits, means
        self.log_scales = jnp.maximum(log_scales, MIN_LOG_SCALE)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.logits.shape[:-1]

    def log_prob(self, value: jax.Array) -> jax.Array:
        y = (2.0 * value - 1.0)[..., None]  # pixel values k / 255 in [0, 1] -> [-1, 1]
        centred = y - self.means
        inverse_scale = jnp.exp(-self.log_scales)
        plus, minus = inverse_scale * (centred + HALF_BIN), inverse_scale * (centred - HALF_BIN)
        log_cdf_plus = jax.nn.log_sigmoid(plus)  # the value 0's bin reaches to -inf
        log_one_minus_cdf_minus = jax.nn.log_sigmoid(-minus)  # the value 255's bin reaches to +inf
        mass = jax.nn.sigmoid(plus) - jax.nn.sigmoid(minus)
        # Where the bin's mass underflows, the density at its centre times its width (as PixelCNN++).
        mid = inverse_scale * centred
        log_density_mid = mid - self.log_scales - 2.0 * jax.nn.softplus(mid) + math.log(2 * HALF_BIN)
        inner = jnp.where(mass > 1e-5, jnp.log(jnp.maximum(mass, 1e-12)), log_density_mid)
        per_component = jnp.where(y < -0.999, log_cdf_plus, jnp.where(y > 0.999, log_one_minus_cdf_minus, inner))
        return jax.nn.logsumexp(jax.nn.log_softmax(self.logits) + per_component, axis=-1)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        pick, noise = jax.random.split(key)
        component = jax.random.categorical(pick, self.logits, shape=(n,) + self.batch_shape)
        choose = lambda a: jnp.take_along_axis(jnp.broadcast_to(a, (n,) + a.shape), component[..., None], -1)[..., 0]
        u = jax.random.uniform(noise, component.shape, minval=1e-5, maxval=1.0 - 1e-5)
        y = choose(self.means) + jnp.exp(choose(self.log_scales)) * (jnp.log(u) - jnp.log1p(-u))
        return jnp.round((jnp.clip(y, -1.0, 1.0) + 1.0) * 127.5) / 255.0

    def mean(self) -> jax.Array:
        """The mixture's mean location in [0, 1] (clipping and rounding left out: plots show it)."""
        weights = jax.nn.softmax(self.logits)
        return jnp.clip((jnp.sum(weights * self.means, axis=-1) + 1.0) / 2.0, 0.0, 1.0)

    def mode(self) -> jax.Array:
        """The location of the heaviest component, rounded to a pixel value."""
        best = jnp.argmax(self.logits, axis=-1)[..., None]
        y = jnp.take_along_axis(self.means, best, -1)[..., 0]
        return jnp.round((jnp.clip(y, -1.0, 1.0) + 1.0) * 127.5) / 255.0


def continuous_bernoulli_log_normaliser(logits: jax.Array) -> jax.Array:
    """log C(lambda) = log(l / tanh(l / 2)) for logits l; log 2 + l^2 / 12 near 0, where the ratio is 0/0."""
    small = jnp.abs(logits) < SMALL_LOGIT
    safe = jnp.where(small, SMALL_LOGIT, logits)
    exact = jnp.log(jnp.abs(safe)) - jnp.log(jnp.abs(jnp.tanh(safe / 2.0)))
    return jnp.where(small, math.log(2.0) + logits**2 / 12.0, exact)


class ContinuousBernoulli(distrax.Distribution):
    """The continuous Bernoulli on [0, 1] per dimension, from logits."""

    def __init__(self, logits: jax.Array):
        self.logits = logits

    @property
    def event_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.logits.shape

    def log_prob(self, value: jax.Array) -> jax.Array:
        return value * self.logits - jax.nn.softplus(self.logits) + continuous_bernoulli_log_normaliser(self.logits)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        # The inverse CDF: x = log1p(u (e^l - 1)) / l, and u itself near l = 0.
        u = jax.random.uniform(key, (n,) + self.batch_shape, minval=1e-6, maxval=1.0 - 1e-6)
        logits = jnp.clip(self.logits, -30.0, 30.0)
        small = jnp.abs(logits) < SMALL_LOGIT
        safe = jnp.where(small, SMALL_LOGIT, logits)
        return jnp.clip(jnp.where(small, u, jnp.log1p(u * jnp.expm1(safe)) / safe), 0.0, 1.0)

    def mean(self) -> jax.Array:
        """lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda)) = sigmoid(l) / tanh(l / 2) - 1 / l."""
        small = jnp.abs(self.logits) < SMALL_LOGIT
        safe = jnp.where(small, SMALL_LOGIT, self.logits)
        exact = jax.nn.sigmoid(safe) / jnp.tanh(safe / 2.0) - 1.0 / safe
        return jnp.where(small, 0.5 + self.logits / 12.0, exact)

    def mode(self) -> jax.Array:
        return (self.logits > 0).astype(self.logits.dtype)


@dataclasses.dataclass(frozen=True)
class DiscretizedLogisticMixtureLikelihood:
    """A mixture of `components` discretized logistics per dimension, for 8-bit data."""

    components: int = 5
    data_kind: str = "8bit"

    @property
    def params_per_dim(self) -> int:
        return 3 * self.components  # mixture logits, locations, log-scales

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        flat = params.reshape((params.shape[0], -1, params.shape[-1]))
        logits, means, log_scales = jnp.split(flat, 3, axis=-1)
        return FlatEvents(DiscretizedLogisticMixture(logits, means, log_scales), params.shape[1:-1])


@dataclasses.dataclass(frozen=True)
class ContinuousBernoulliLikelihood:
    """Continuous Bernoulli with logits from the decoder, for data in [0, 1]."""

    params_per_dim: int = 1
    data_kind: str = "unit_interval"

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        return _independent(ContinuousBernoulli, params[..., 0])


def make_discretized_logistic_mixture(
    components: Annotated[int, AtLeast(1)] = 5,
) -> DiscretizedLogisticMixtureLikelihood:
    """Discretized mixture of logistics (PixelCNN++) for 8-bit images: 3 x `components` parameters per dimension.

    >>> make_discretized_logistic_mixture(components=3)(jnp.zeros((2, 8, 8, 3, 9))).log_prob(jnp.zeros((2, 8, 8, 3)))  # doctest: +SKIP
    """
    if components < 1:
        raise ValueError(f"components must be at least 1, got {components}")
    return DiscretizedLogisticMixtureLikelihood(int(components))


def make_continuous_bernoulli() -> ContinuousBernoulliLikelihood:
    """Continuous Bernoulli (Loaiza-Ganem and Cunningham 2019), a normalised density on [0, 1] (decoder outputs logits).

    >>> make_continuous_bernoulli()(jnp.zeros((2, 8, 8, 1, 1))).log_prob(jnp.full((2, 8, 8, 1), 0.3))  # doctest: +SKIP
    """
    return ContinuousBernoulliLikelihood()


@zoo.hookimpl
def register_components(register):
    """The discretized logistic mixture and the continuous Bernoulli."""
    register("likelihood", "discretized_logistic_mixture", make_discretized_logistic_mixture)
    register("likelihood", "continuous_bernoulli", make_continuous_bernoulli)
