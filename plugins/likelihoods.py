"""Likelihoods p(x | z, c): turn a decoder's raw parameters into a distrax distribution.

The decoder outputs `(B, *x_shape, params_per_dim)`; every dimension of x is an
independent event dimension.
"""

from __future__ import annotations

import dataclasses

import distrax
import jax
import jax.numpy as jnp

import zoo


def _independent(distribution: distrax.Distribution) -> distrax.Independent:
    # All axes but the batch axis form one event: log_prob sums over pixels.
    return distrax.Independent(distribution, reinterpreted_batch_ndims=len(distribution.batch_shape) - 1)


@dataclasses.dataclass(frozen=True)
class BernoulliLikelihood:
    """Bernoulli with logits from the decoder, for data in [0, 1]."""

    params_per_dim: int = 1

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        return _independent(distrax.Bernoulli(logits=params[..., 0]))


@dataclasses.dataclass(frozen=True)
class FixedScaleGaussianLikelihood:
    """Gaussian with the decoder's mean and a fixed scale (identity covariance at scale 1)."""

    scale: float = 1.0
    params_per_dim: int = 1

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        loc = params[..., 0]
        return _independent(distrax.Normal(loc, jnp.full(loc.shape, self.scale, loc.dtype)))


@dataclasses.dataclass(frozen=True)
class DiagonalGaussianLikelihood:
    """Gaussian whose mean and diagonal scale the decoder outputs (scale = softplus + floor)."""

    min_scale: float = 1e-3
    params_per_dim: int = 2

    def __call__(self, params: jax.Array) -> distrax.Distribution:
        scale = jax.nn.softplus(params[..., 1]) + self.min_scale
        return _independent(distrax.Normal(params[..., 0], scale))


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


def make_gaussian_fixed(scale: float = 0.1) -> FixedScaleGaussianLikelihood:
    """Gaussian with a fixed scale (decoder outputs the mean).

    >>> make_gaussian_fixed(scale=0.1)(jnp.zeros((2, 3, 1))).log_prob(jnp.zeros((2, 3)))  # doctest: +SKIP
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return FixedScaleGaussianLikelihood(scale=float(scale))


def make_gaussian_diagonal(min_scale: float = 1e-3) -> DiagonalGaussianLikelihood:
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
