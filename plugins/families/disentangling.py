"""Disentangling objectives that reshape the ELBO's KL term: the annealed-capacity VAE (Burgess et
al. 2018) and DIP-VAE I and II (Kumar et al. 2018). (beta-TC-VAE is in total_correlation.py,
FactorVAE, whose discriminator is a network of its own, in adversarial.py.)

- annealed_vae: -E_q[log p(x|z)] + gamma |KL - C|, the capacity C rising linearly from
  `capacity_start` to `capacity_end` nats over `capacity_steps` training steps (then held), with
  KL the batch's mean KL(q(z|x) || p(z)), as disentanglement_lib computes it.
- dip_vae_i / dip_vae_ii: the ELBO minus a penalty that pushes a covariance towards the identity,
  lambda_od sum_{i != j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2, where Cov is, over the batch,
  DIP-VAE-I: Cov[mu(x)], the covariance of the posterior means;
  DIP-VAE-II: Cov[mu(x)] + E[diag sigma^2(x)], the covariance of the aggregate posterior q(z).
  Both need a diagonal Gaussian posterior (encoders mlp, conv), whose `stddev()` they read.
"""

from __future__ import annotations

from typing import Annotated, Optional

import jax
import jax.numpy as jnp
import optax

import zoo
from zoo import AtLeast

Weight = Annotated[float, AtLeast(0)]


def capacity_schedule(capacity_start: float, capacity_end: float, capacity_steps: int):
    """C against the step: linear from `capacity_start` to `capacity_end` over `capacity_steps`, then held.
    A capacity that falls is refused: Burgess et al. widen the information bottleneck, never narrow it."""
    if capacity_end < capacity_start:
        raise ValueError(
            f"capacity_end: the capacity schedule decreases ({capacity_start} nats at the start, {capacity_end} "
            "at the end); the capacity C may only rise: give capacity_end >= capacity_start"
        )
    if capacity_steps < 1:
        raise ValueError(f"capacity_steps: expected at least 1 step, got {capacity_steps}")
    return optax.linear_schedule(capacity_start, capacity_end, capacity_steps)


def annealed_vae(
    gamma: Weight = 1000.0,
    capacity_start: Annotated[float, AtLeast(0)] = 0.0,
    capacity_end: Annotated[float, AtLeast(0)] = 25.0,
    capacity_steps: Optional[Annotated[int, AtLeast(1)]] = None,
    total_steps: Optional[int] = None,
) -> zoo.Objective:
    """Burgess et al.'s annealed VAE: -E_q[log p(x|z)] + gamma |KL(q || p) - C|, C rising linearly.

    C goes from `capacity_start` to `capacity_end` nats over `capacity_steps` steps (null: the
    whole training budget), then stays; outside training (`step=None`) it is `capacity_end`.

    >>> loss, metrics = annealed_vae(gamma=1000.0, capacity_end=25.0, capacity_steps=5000)(model, Batch(x), rng, step)  # doctest: +SKIP
    """
    if not gamma >= 0:
        raise ValueError(f"gamma: expected a weight >= 0, got {gamma}")
    schedule = capacity_schedule(capacity_start, capacity_end, capacity_steps or total_steps or 1)

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        _, log_likelihood, kl = model.forward(batch.x, batch.c, rng)
        capacity = jnp.asarray(capacity_end if step is None else schedule(step), jnp.float32)
        loss = -log_likelihood.mean() + gamma * jnp.abs(kl.mean() - capacity)
        return loss, {
            "elbo": (log_likelihood - kl).mean(),
            "log_likelihood": log_likelihood.mean(),
            "kl": kl.mean(),
            "capacity": capacity,
        }

    loss_fn.selection_metric = "loss"  # type: ignore[attr-defined]  # it trades the ELBO for a KL of C nats
    return loss_fn


def batch_covariance(values: jax.Array) -> jax.Array:
    """The covariance (D, D) of the rows of `values` (B, D), normalised by B (as disentanglement_lib)."""
    centred = values - values.mean(axis=0)
    return centred.T @ centred / values.shape[0]


def dip_covariance(loc: jax.Array, scale: jax.Array, kind: str) -> jax.Array:
    """DIP-VAE-I's Cov[mu(x)], or DIP-VAE-II's Cov[mu(x)] + E[diag sigma^2(x)], over the batch."""
    covariance = batch_covariance(loc)
    if kind == "ii":
        covariance = covariance + jnp.diag(jnp.mean(jnp.square(scale), axis=0))
    return covariance


def covariance_penalty(covariance: jax.Array, lambda_od: float, lambda_d: float) -> jax.Array:
    """lambda_od sum_{i != j} Cov_ij^2 + lambda_d sum_i (Cov_ii - 1)^2."""
    diagonal = jnp.diagonal(covariance)
    off_diagonal = covariance - jnp.diag(diagonal)
    return lambda_od * jnp.sum(jnp.square(off_diagonal)) + lambda_d * jnp.sum(jnp.square(diagonal - 1.0))


def dip_vae(kind: str, lambda_od: float, lambda_d: float) -> zoo.Objective:
    """The DIP-VAE loss of `kind` ("i" or "ii"): the negative ELBO plus the covariance penalty."""
    if not lambda_od >= 0 or not lambda_d >= 0:
        raise ValueError(f"lambda_od and lambda_d: expected weights >= 0, got {lambda_od} and {lambda_d}")

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        terms = model.elbo_terms(batch.x, batch.c, rng)
        covariance = dip_covariance(terms.q.mean(), terms.q.stddev(), kind)
        penalty = covariance_penalty(covariance, lambda_od, lambda_d)
        elbo = (terms.log_likelihood - terms.kl).mean()
        return -elbo + penalty, {"elbo": elbo, "kl": terms.kl.mean(), "dip_penalty": penalty}

    return loss_fn


def dip_vae_i(lambda_od: Weight = 10.0, lambda_d: Weight = 100.0) -> zoo.Objective:
    """DIP-VAE-I (Kumar et al. 2018): the ELBO minus a penalty driving Cov[mu(x)] towards the identity.

    disentanglement_lib's defaults: lambda_d = 10 lambda_od.

    >>> loss, metrics = dip_vae_i(lambda_od=10.0, lambda_d=100.0)(model, Batch(x), rng)  # doctest: +SKIP
    """
    return dip_vae("i", lambda_od, lambda_d)


def dip_vae_ii(lambda_od: Weight = 10.0, lambda_d: Weight = 10.0) -> zoo.Objective:
    """DIP-VAE-II (Kumar et al. 2018): the ELBO minus a penalty driving Cov_q(z) towards the identity.

    Cov_q(z) = Cov[mu(x)] + E[diag sigma^2(x)]; disentanglement_lib's defaults: lambda_d = lambda_od.

    >>> loss, metrics = dip_vae_ii(lambda_od=10.0, lambda_d=10.0)(model, Batch(x), rng)  # doctest: +SKIP
    """
    return dip_vae("ii", lambda_od, lambda_d)


@zoo.hookimpl
def register_components(register):
    """The annealed-capacity VAE and DIP-VAE I and II."""
    register("objective", "annealed_vae", annealed_vae)
    register("objective", "dip_vae_i", dip_vae_i)
    register("objective", "dip_vae_ii", dip_vae_ii)
