"""Likelihoods p(x | z, c): turn a decoder's raw parameters into a distrax distribution.

The decoder outputs `(B, *x_shape, params_per_dim)`; every dimension of x is an
independent event dimension.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import distrax
import jax
import jax.numpy as jnp

import zoo
from zoo import Above, AtLeast


class FlatEvents(distrax.Distribution):
    """Independent dimensions of x, scored as one flat vector per example.

    The same distribution as `distrax.Independent` over every axis but the
    batch axis. The difference is speed: XLA's CPU backend sums a
    (B, 28, 28, 1) array over its last three axes about 3.5x slower than a
    (B, 784) array over its last one (13.8 against 3.9 ms for 2500 images,
    measured here), and this sum is the hot loop of importance sampling.
    """

    def __init__(self, flat: distrax.Distribution, event_shape: tuple[int, ...]):
        self._flat = distrax.Independent(flat, reinterpreted_batch_ndims=1)
        self._event = tuple(event_shape)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self._event

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self._flat.batch_shape

    def _unflatten(self, flat: jax.Array) -> jax.Array:
        return flat.reshape(flat.shape[:-1] + self._event)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        return self._unflatten(self._flat.sample(seed=key, sample_shape=n))

    def log_prob(self, value: jax.Array) -> jax.Array:
        return self._flat.log_prob(value.reshape(value.shape[: value.ndim - len(self._event)] + (-1,)))

    def mean(self) -> jax.Array:
        return self._unflatten(self._flat.mean())

    def mode(self) -> jax.Array:
        return self._unflatten(self._flat.mode())


class LogitBernoulli(distrax.Bernoulli):
    """distrax's Bernoulli, its log_prob computed with one softplus per dimension instead of two.

    log p(x) = x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l);
    distrax evaluates both softplus terms, which doubles the cost of the
    likelihood in importance sampling (measured here: 6.5 against 3.9 ms for
    2500 images of 784 pixels).
    """

    def log_prob(self, value: jax.Array) -> jax.Array:
        return value * self.logits - jax.nn.softplus(self.logits)


def _independent(make, *params: jax.Array) -> FlatEvents:
    """`make(*flat_params)`, one distribution per dimension, as independent dimensions of x."""
    event = params[0].shape[1:]
    return FlatEvents(make(*(p.reshape((p.shape[0], -1)) for p in params)), event)


@dataclasses.dataclass(frozen=True)
class BernoulliLikelihood:
    """Bernoulli with logits from the decoder, for data in [0, 1]."""

    params_per_dim: int = 1
    data_kind: str = "binary"

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        return _independent(lambda logits: LogitBernoulli(logits=logits), params[..., 0])


@dataclasses.dataclass(frozen=True)
class FixedScaleGaussianLikelihood:
    """Gaussian with the decoder's mean and a fixed scale (identity covariance at scale 1)."""

    scale: float = 1.0
    params_per_dim: int = 1
    data_kind: str = "real"

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        loc = params[..., 0]
        return _independent(distrax.Normal, loc, jnp.full(loc.shape, self.scale, loc.dtype))


@dataclasses.dataclass(frozen=True)
class DiagonalGaussianLikelihood:
    """Gaussian whose mean and diagonal scale the decoder outputs (scale = softplus + floor)."""

    min_scale: float = 1e-3
    params_per_dim: int = 2
    data_kind: str = "real"

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        scale = jax.nn.softplus(params[..., 1]) + self.min_scale
        return _independent(distrax.Normal, params[..., 0], scale)


def make_bernoulli() -> BernoulliLikelihood:
    """Bernoulli likelihood (decoder outputs logits).

    >>> make_bernoulli()(jnp.zeros((2, 8, 8, 1, 1))).log_prob(jnp.ones((2, 8, 8, 1)))  # doctest: +SKIP
    """
    return BernoulliLikelihood()


def make_gaussian_identity() -> FixedScaleGaussianLikelihood:
    """Gaussian with identity covariance (decoder outputs the mean).

    >>> make_gaussian_identity()(jnp.zeros((2, 3, 1))).log_prob(jnp.zeros((2, 3)))  # doctest: +SKIP
    """
    return FixedScaleGaussianLikelihood(scale=1.0)


def make_gaussian_fixed(scale: Annotated[float, Above(0)] = 0.1) -> FixedScaleGaussianLikelihood:
    """Gaussian with a fixed scale (decoder outputs the mean).

    >>> make_gaussian_fixed(scale=0.1)(jnp.zeros((2, 3, 1))).log_prob(jnp.zeros((2, 3)))  # doctest: +SKIP
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return FixedScaleGaussianLikelihood(scale=float(scale))


def make_gaussian_diagonal(min_scale: Annotated[float, AtLeast(0)] = 1e-3) -> DiagonalGaussianLikelihood:
    """Gaussian whose diagonal covariance the decoder outputs (mean and scale per dimension).

    >>> make_gaussian_diagonal()(jnp.zeros((2, 3, 2))).log_prob(jnp.zeros((2, 3)))  # doctest: +SKIP
    """
    if min_scale < 0:
        raise ValueError(f"min_scale must be non-negative, got {min_scale}")
    return DiagonalGaussianLikelihood(min_scale=float(min_scale))


@zoo.hookimpl
def register_components(register):
    """Bernoulli and Gaussian likelihoods."""
    register("likelihood", "bernoulli", make_bernoulli)
    register("likelihood", "gaussian_identity", make_gaussian_identity)
    register("likelihood", "gaussian_fixed", make_gaussian_fixed)
    register("likelihood", "gaussian_diagonal", make_gaussian_diagonal)
