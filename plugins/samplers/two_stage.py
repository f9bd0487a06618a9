"""`two_stage`: the second stage of Dai and Wipf's two-stage VAE (2019), fitted after training:
a Gaussian VAE whose data are the first stage's codes (the posterior means of the run's training
split), with a learned decoder scale gamma as theirs.

Stage 2 is q(u | z) = N(mu(z), diag sigma(z)^2), p(z | u) = N(D(u), gamma^2 I), p(u) = N(0, I), its
latent u of the codes' dimension by default (their kappa = d), trained on the ELBO of the
standardised codes. Sampling draws u ~ N(0, I) and z ~ p(z | u), which the run's decoder then
decodes to x. The density of a code, p(z) = integral of p(z | u) p(u) du, is importance-sampled
with `importance_samples` draws at a fixed key, half from q(u | z) and half from p(u), so that it
is one deterministic function of z; its log is a lower bound of log p(z) on average.
"""

from __future__ import annotations

import math
from typing import Annotated, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo import AtLeast
from vae_zoo_plugins.layers.dense import MLP, DiagonalGaussianHead, activation_fn, check_sizes, dense
from vae_zoo_plugins.samplers.fitting import (
    BatchSize,
    CodeStandardisation,
    FitBudget,
    FittedCodeDistribution,
    LearningRate,
    Seed,
    Steps,
    check_budget,
    fit_by_gradient,
    frozen,
    posterior_means,
    standard_normal,
)


# q(u | z)'s variance within [e^-14, e^2]: standard deviations from 0.001 to 2.7 on codes of unit scale.
POSTERIOR_LOG_VARIANCE_BOUNDS = (-14.0, 2.0)


class SecondStageVAE(nnx.Module):
    """A Gaussian VAE over codes z (..., D): encoder q(u | z), decoder p(z | u) = N(D(u), gamma^2 I)."""

    def __init__(self, code_dim: int, latent_dim: int, hidden: Sequence[int], activation: str, *, rngs: nnx.Rngs):
        self.encoder = MLP(code_dim, hidden, activation, rngs=rngs)
        # Its log-variance clipped as the VampPrior code's: a code far from the standardised training
        # codes (a model's own z, when a recipe names this prior) cannot overflow the scale.
        self.posterior_head = DiagonalGaussianHead(
            hidden[-1], latent_dim, rngs=rngs, log_variance_bounds=POSTERIOR_LOG_VARIANCE_BOUNDS
        )
        self.decoder = MLP(latent_dim, hidden, activation, rngs=rngs)
        self.decoder_mean = dense(hidden[-1], code_dim, rngs=rngs)
        self.log_gamma = nnx.Param(jnp.zeros(()))  # one scale for every unit, as Dai and Wipf's gamma
        self.latent_dim = latent_dim

    def posterior(self, z: jax.Array) -> distrax.MultivariateNormalDiag:
        return self.posterior_head(self.encoder(z))

    def likelihood(self, u: jax.Array) -> distrax.MultivariateNormalDiag:
        mean = self.decoder_mean(self.decoder(u))
        return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(jnp.exp(self.log_gamma[...]), mean.shape))

    def negative_elbo(self, z: jax.Array, key: jax.Array) -> jax.Array:
        """-E_q[log p(z | u)] + KL(q(u | z) || N(0, I)), averaged over the rows of z (the KL in closed form)."""
        q = self.posterior(z)
        u = q.sample(seed=key)
        prior = standard_normal(u.shape[0], self.latent_dim)
        return -(self.likelihood(u).log_prob(z) - q.kl_divergence(prior)).mean()


class SecondStageMarginal(distrax.Distribution):
    """p(z) = integral of p(z | u) N(u; 0, I) du of a second-stage VAE, batch (B,), event (D,)."""

    def __init__(self, vae: SecondStageVAE, code_dim: int, batch_size: int, importance_samples: int):
        self.vae, self.code_dim, self.batch_size, self.importance_samples = (
            vae,
            code_dim,
            batch_size,
            importance_samples,
        )

    @property
    def event_shape(self):
        return (self.code_dim,)

    @property
    def batch_shape(self):
        return (self.batch_size,)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        latent_key, code_key = jax.random.split(key)
        u = jax.random.normal(latent_key, (n, self.batch_size, self.vae.latent_dim))
        return self.vae.likelihood(u).sample(seed=code_key)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """log (1/K) sum_k p(z | u_k) p(u_k) / r(u_k), u_k drawn at a fixed key, half from q(u | z)
        and half from p(u) (the first half the larger), r = (K_q q + K_p p) / K: multiple importance
        sampling with the balance heuristic, unbiased for p(z), whose weights stay bounded where q is a
        poor proposal (an encoder fitted briefly, a code far from the training codes). The K draws
        are taken one at a time, so memory holds one decoder pass."""
        q = self.vae.posterior(value)
        prior = distrax.MultivariateNormalDiag(jnp.zeros(self.vae.latent_dim), jnp.ones(self.vae.latent_dim))
        from_posterior = (self.importance_samples + 1) // 2
        log_share_q = math.log(from_posterior / self.importance_samples)
        log_share_p = (
            math.log1p(-from_posterior / self.importance_samples)
            if from_posterior < self.importance_samples
            else -math.inf
        )

        def log_weight(index):
            key = jax.random.fold_in(jax.random.key(0), index)
            u = jnp.where(
                index < from_posterior, q.sample(seed=key), prior.sample(seed=key, sample_shape=q.batch_shape)
            )
            log_proposal = jnp.logaddexp(log_share_q + q.log_prob(u), log_share_p + prior.log_prob(u))
            return self.vae.likelihood(u).log_prob(value) + prior.log_prob(u) - log_proposal

        log_weights = jax.lax.map(log_weight, jnp.arange(self.importance_samples))
        return jax.nn.logsumexp(log_weights, axis=0) - math.log(self.importance_samples)


class TwoStagePrior(nnx.Module):
    """The second stage over the standardised codes, fitted after training (the VAE at its initialisation before)."""

    def __init__(
        self,
        code_dim: int,
        latent_dim: int,
        hidden: Sequence[int],
        activation: str,
        importance_samples: int,
        budget: FitBudget,
    ):
        self.vae = SecondStageVAE(code_dim, latent_dim, hidden, activation, rngs=nnx.Rngs(budget.seed))
        self.standardisation = CodeStandardisation(code_dim)
        self.importance_samples, self.budget, self.code_dim = importance_samples, budget, code_dim

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> FittedCodeDistribution:
        marginal = SecondStageMarginal(frozen(self.vae), self.code_dim, batch_size, self.importance_samples)
        code_mean = jax.lax.stop_gradient(self.standardisation.shift[...])
        return FittedCodeDistribution(marginal, self.standardisation.bijector(), code_mean)

    def fit_after_training(self, model, x: jax.Array, c: Optional[jax.Array], batch_size: int = 1000) -> None:
        """Train the second stage on the ELBO of the standardised posterior means of the rows of x."""
        codes = self.standardisation.fit(posterior_means(model, x, c, batch_size))
        fit_by_gradient(self.vae, lambda vae, batch, key: vae.negative_elbo(batch, key), codes, self.budget)


def make_two_stage_prior(
    latent_dim,
    second_latent_dim: Optional[Annotated[int, AtLeast(1)]] = None,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    importance_samples: Annotated[int, AtLeast(1)] = 64,
    steps: Steps = 3000,
    batch_size: BatchSize = 256,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
) -> TwoStagePrior:
    """Dai and Wipf's second-stage VAE, fitted to the training codes after training; sampled as u -> z.

    Its latent has `second_latent_dim` units (default: the codes' own), its encoder and decoder
    `hidden` units; `importance_samples` draws estimate the density of a code. A sampler:
    `zoo sample RUN --sampler two_stage`.

    >>> prior = make_two_stage_prior(16, hidden=(256, 256), steps=3000)  # doctest: +SKIP
    """
    if second_latent_dim is not None and second_latent_dim < 1:
        raise ValueError(f"second_latent_dim: expected at least 1, got {second_latent_dim}")
    if importance_samples < 1:
        raise ValueError(f"importance_samples: expected at least 1, got {importance_samples}")
    check_sizes("hidden", hidden, allow_empty=False)
    activation_fn(activation)
    budget = check_budget(FitBudget(steps, batch_size, learning_rate, seed))
    second = latent_dim if second_latent_dim is None else second_latent_dim
    return TwoStagePrior(latent_dim, second, tuple(hidden), activation, importance_samples, budget)


make_two_stage_prior.sampler = True  # type: ignore[attr-defined]
make_two_stage_prior.conformance = {"options": {"hidden": [8], "steps": 20, "importance_samples": 256}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """Dai and Wipf's second-stage VAE fitted after training."""
    register("prior", "two_stage", make_two_stage_prior)
