"""Learned mixture priors: the VampPrior (Tomczak and Welling 2018) and a mixture of Gaussians.

The VampPrior is p(z) = 1/K sum_k q(z | u_k): the model's own encoder applied to
K learned pseudo-inputs u_k. It has no closed-form KL with the posterior, so
the ELBO uses the one-sample Monte Carlo estimate log q(z|x) - log p(z).
"""

from __future__ import annotations

import math
from typing import Annotated, Callable, Optional

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo import AtLeast


# Below this scale the matmul form's float32 cancellation grows (measured against the
# broadcast form, latent 40, 500 components: 0.007 nats at scale 0.05, 0.3 at 0.01).
MATMUL_MIN_SCALE = 0.05


PseudoInputs = Annotated[int, AtLeast(1)]  # K, the VampPrior's number of pseudo-inputs
Spread = Annotated[float, AtLeast(0)]  # a standard deviation of the initial values


def _expanded_squared_distances(z: jax.Array, locs: jax.Array, scales: jax.Array) -> jax.Array:
    precision = scales**-2.0
    return (z * z) @ precision.T - 2.0 * z @ (locs * precision).T + jnp.sum(locs * locs * precision, axis=-1)


def _broadcast_squared_distances(z: jax.Array, locs: jax.Array, scales: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square((z[..., None, :] - locs) / scales), axis=-1)


def diagonal_gaussian_log_densities(z: jax.Array, locs: jax.Array, scales: jax.Array) -> jax.Array:
    """log N(z; loc_k, diag(scale_k^2)) for every component k: z (..., D), locs and scales (K, D) -> (..., K).

    The squared distance is expanded into matmuls, sum z^2 / s^2 - 2 z mu / s^2 + mu^2 / s^2,
    instead of broadcasting to (..., K, D): on XLA's CPU backend the broadcast form made a
    500-component prior's training step 2.6x a VAE step. The expansion cancels in float32 when
    a scale is small, so below MATMUL_MIN_SCALE the broadcast form is used (lax.cond: only the
    branch taken runs).
    """
    squared = jax.lax.cond(
        jnp.min(scales) >= MATMUL_MIN_SCALE, _expanded_squared_distances, _broadcast_squared_distances, z, locs, scales
    )
    normaliser = jnp.sum(jnp.log(scales), axis=-1) + 0.5 * z.shape[-1] * math.log(2.0 * math.pi)
    return -0.5 * squared - normaliser


def component_log_densities(components: distrax.Distribution, z: jax.Array) -> jax.Array:
    """log density of z (..., D) under each of a batch (K,) of distributions -> (..., K)."""
    if isinstance(components, distrax.MultivariateNormalDiag):
        return diagonal_gaussian_log_densities(z, components.loc, components.scale_diag)
    return components.log_prob(z[..., None, :])


class VampPriorDistribution(distrax.Distribution):
    """1/K sum_k q(z | u_k) for a batch of `batch_size` rows (every row the same mixture).

    `components` is the encoder's posterior at the K pseudo-inputs (batch (K,));
    `posterior` maps pseudo-inputs to that posterior again, for drawing samples
    from any encoder's distribution.
    """

    def __init__(
        self,
        components: distrax.Distribution,
        pseudo_inputs: jax.Array,
        posterior: Callable[[jax.Array], distrax.Distribution],
        batch_size: int,
    ):
        self.components = components
        self.pseudo_inputs = pseudo_inputs
        self.posterior = posterior
        self.batch_size = batch_size

    @property
    def num_components(self) -> int:
        return self.pseudo_inputs.shape[0]

    @property
    def event_shape(self):
        return self.components.event_shape

    @property
    def batch_shape(self):
        return (self.batch_size,)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """log (1/K) sum_k q(z | u_k), for z of shape (..., B, D)."""
        per_component = component_log_densities(self.components, value)  # (..., B, K)
        return jax.nn.logsumexp(per_component, axis=-1) - math.log(self.num_components)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        """Pick a pseudo-input uniformly for every draw, then draw z from q(z | u_k)."""
        pick_key, draw_key = jax.random.split(key)
        picks = jax.random.randint(pick_key, (n, self.batch_size), 0, self.num_components)
        if isinstance(self.components, distrax.MultivariateNormalDiag):  # gather, no second encoder pass
            chosen = distrax.MultivariateNormalDiag(self.components.loc[picks], self.components.scale_diag[picks])
            return chosen.sample(seed=draw_key)
        chosen = self.posterior(self.pseudo_inputs[picks.reshape(-1)])
        return chosen.sample(seed=draw_key).reshape((n, self.batch_size) + tuple(self.event_shape))

    def mean(self) -> jax.Array:
        """The mixture's mean, the average of the component means, for every row."""
        centre = jnp.mean(self.components.mean(), axis=0)
        return jnp.broadcast_to(centre, (self.batch_size,) + centre.shape)

    def variance(self) -> jax.Array:
        """Per unit: the mean of the components' variances plus the variance of their means."""
        means = self.components.mean()
        spread = jnp.mean(self.components.variance(), axis=0) + jnp.var(means, axis=0)
        return jnp.broadcast_to(spread, (self.batch_size,) + spread.shape)


class VampPrior(nnx.Module):
    """p(z) = 1/K sum_k q(z | u_k) with learned pseudo-inputs u_k in [0, 1] (clipped, as the
    paper's Hardtanh(0, 1)), initialised N(init_mean, init_std^2) as in the VampPrior code."""

    def __init__(
        self,
        encoder,
        x_shape,
        num_pseudo_inputs: int,
        init_mean: float,
        init_std: float,
        *,
        rngs: nnx.Rngs,
        level: str = "whole",
    ):
        self.encoder = encoder  # shared with the model: the same parameters, not a copy
        self.level = level
        shape = (num_pseudo_inputs,) + tuple(x_shape)
        self.pseudo_inputs = nnx.Param(init_mean + init_std * jax.random.normal(rngs.params(), shape))

    def posterior(self, inputs: jax.Array) -> distrax.Distribution:
        """The encoder's posterior at `inputs` (its top layer's, for the top of a hierarchy)."""
        if self.level == "top":
            return self.encoder.top_posterior(inputs, None)
        return self.encoder(inputs, None)

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> VampPriorDistribution:
        inputs = jnp.clip(self.pseudo_inputs[...], 0.0, 1.0)
        return VampPriorDistribution(self.posterior(inputs), inputs, self.posterior, batch_size)


def check_vampprior(c_shape, num_pseudo_inputs: int, init_std: float) -> None:
    """Refuse what a VampPrior cannot be: conditional, no pseudo-inputs, a negative spread."""
    if c_shape is not None:
        raise zoo.ModelBuildError(
            "prior 'vampprior' is p(z) of an unconditional model, built from the encoder on pseudo-inputs; "
            "the recipe has a condition (use prior conditional, or condition: null)"
        )
    if num_pseudo_inputs < 1:
        raise ValueError(f"num_pseudo_inputs: expected at least 1, got {num_pseudo_inputs}")
    if not init_std >= 0:
        raise ValueError(f"init_std: expected >= 0, got {init_std}")


def make_vampprior(
    encoder,
    x_shape,
    c_shape,
    rngs,
    num_pseudo_inputs: PseudoInputs = 500,
    init_mean: float = 0.05,
    init_std: Spread = 0.01,
) -> VampPrior:
    """VampPrior p(z) = 1/K sum_k q(z | u_k) over K learned pseudo-inputs (Tomczak and Welling 2018).

    Works with any encoder; the defaults are the paper's (K = 500, pseudo-inputs
    initialised N(0.05, 0.01^2)).

    >>> prior = make_vampprior(encoder, (28, 28, 1), None, nnx.Rngs(0), num_pseudo_inputs=500)  # doctest: +SKIP
    """
    check_vampprior(c_shape, num_pseudo_inputs, init_std)
    return VampPrior(encoder, x_shape, num_pseudo_inputs, init_mean, init_std, rngs=rngs)


class DiagonalGaussianMixture(distrax.MixtureSameFamily):
    """sum_k w_k N(z; mu_k, diag(s_k^2)) for `batch_size` rows, every row the same mixture:
    distrax's MixtureSameFamily, its log density through matmuls (`diagonal_gaussian_log_densities`)
    on the unbroadcast parameters; sampling, mean and the rest are distrax's."""

    def __init__(self, logits: jax.Array, locs: jax.Array, scales: jax.Array, batch_size: int):
        (k, d) = locs.shape
        super().__init__(
            distrax.Categorical(logits=jnp.broadcast_to(logits, (batch_size, k))),
            distrax.MultivariateNormalDiag(
                jnp.broadcast_to(locs, (batch_size, k, d)), jnp.broadcast_to(scales, (batch_size, k, d))
            ),
        )
        self._mixture = (logits, locs, scales)

    def log_prob(self, value: jax.Array) -> jax.Array:
        logits, locs, scales = self._mixture
        densities = diagonal_gaussian_log_densities(value, locs, scales)
        return jax.nn.logsumexp(densities + jax.nn.log_softmax(logits), axis=-1)


class MixturePrior(nnx.Module):
    """p(z) = sum_k pi_k N(z; mu_k, diag(sigma_k^2)), every parameter learned (distrax.MixtureSameFamily)."""

    def __init__(self, latent_dim: int, num_components: int, init_spread: float, *, rngs: nnx.Rngs):
        self.logits = nnx.Param(jnp.zeros((num_components,)))
        self.locs = nnx.Param(init_spread * jax.random.normal(rngs.params(), (num_components, latent_dim)))
        self.log_scales = nnx.Param(jnp.zeros((num_components, latent_dim)))

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> DiagonalGaussianMixture:
        return DiagonalGaussianMixture(self.logits[...], self.locs[...], jnp.exp(self.log_scales[...]), batch_size)


def make_mixture_prior(
    latent_dim, rngs, num_components: Annotated[int, AtLeast(1)] = 500, init_spread: Spread = 1.0
) -> MixturePrior:
    """A learned mixture of `num_components` diagonal Gaussians; means start N(0, init_spread^2), scales 1.

    >>> prior = make_mixture_prior(40, nnx.Rngs(0), num_components=500)  # doctest: +SKIP
    """
    if num_components < 1:
        raise ValueError(f"num_components: expected at least 1, got {num_components}")
    if not init_spread >= 0:
        raise ValueError(f"init_spread: expected >= 0, got {init_spread}")
    return MixturePrior(latent_dim, num_components, init_spread, rngs=rngs)


# The conformance suite (zoo.testing) checks each with a few components: the same code, a small model.
make_vampprior.conformance = {"options": {"num_pseudo_inputs": 10}}  # type: ignore[attr-defined]
make_mixture_prior.conformance = {"options": {"num_components": 10}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """VampPrior and mixture-of-Gaussians priors."""
    register("prior", "vampprior", make_vampprior)
    register("prior", "mixture", make_mixture_prior)
