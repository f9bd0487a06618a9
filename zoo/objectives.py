"""Training objectives as pure functions `(model, batch, rng) -> (loss, metrics)`.

Each factory returns such a function; the zoo registers them under kind
`objective` as its default plugin. Losses are means over the batch of the
negated per-example bound, in nats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zoo.hookspecs import hookimpl
from zoo.interfaces import Batch, Objective


def elbo() -> Objective:
    """The evidence lower bound of Kingma and Welling (one reparameterised sample).

    >>> loss, metrics = elbo()(model, Batch(x), rng)  # doctest: +SKIP
    """
    return beta_elbo(beta=1.0)


def beta_elbo(beta: float = 4.0) -> Objective:
    """E_q[log p(x|z,c)] - beta * KL(q || p), Higgins et al.'s beta-VAE objective.

    >>> loss, metrics = beta_elbo(beta=4.0)(model, Batch(x), rng)  # doctest: +SKIP
    """
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")

    def loss_fn(model, batch: Batch, rng):
        _, log_likelihood, kl = model.forward(batch.x, batch.c, rng)
        loss = -(log_likelihood - beta * kl).mean()
        return loss, {"elbo": (log_likelihood - kl).mean(), "log_likelihood": log_likelihood.mean(), "kl": kl.mean()}

    return loss_fn


def iwae(num_samples: int = 5) -> Objective:
    """The importance-weighted bound of Burda et al. with K = num_samples.

    >>> loss, metrics = iwae(num_samples=5)(model, Batch(x), rng)  # doctest: +SKIP
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")

    def loss_fn(model, batch: Batch, rng):
        log_w = model.log_importance_weights(batch.x, batch.c, rng, num_samples)
        bound = jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)
        return -bound.mean(), {"iwae_bound": bound.mean(), "elbo": log_w.mean()}

    return loss_fn


def gsnn_log_likelihood(model, batch: Batch, rng) -> jax.Array:
    """log p(x | z, c) at z ~ p(z | c): the Gaussian stochastic neural network's term."""
    z = model.prior_distribution(batch.c, batch.x.shape[0]).sample(seed=rng)
    return model.decode(z, batch.c).log_prob(batch.x)


def gsnn() -> Objective:
    """Sohn et al.'s GSNN: train the prior network and decoder as a stochastic net, no encoder.

    >>> loss, metrics = gsnn()(model, Batch(x, c), rng)  # doctest: +SKIP
    """

    def loss_fn(model, batch: Batch, rng):
        log_likelihood = gsnn_log_likelihood(model, batch, rng)
        return -log_likelihood.mean(), {"gsnn_log_likelihood": log_likelihood.mean()}

    return loss_fn


def hybrid(alpha: float = 0.5) -> Objective:
    """Sohn et al.'s hybrid: alpha * L_CVAE + (1 - alpha) * L_GSNN.

    >>> loss, metrics = hybrid(alpha=0.5)(model, Batch(x, c), rng)  # doctest: +SKIP
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")

    def loss_fn(model, batch: Batch, rng):
        cvae_rng, gsnn_rng = jax.random.split(rng)
        _, log_likelihood, kl = model.forward(batch.x, batch.c, cvae_rng)
        elbo_value = log_likelihood - kl
        gsnn_value = gsnn_log_likelihood(model, batch, gsnn_rng)
        loss = -(alpha * elbo_value + (1.0 - alpha) * gsnn_value).mean()
        return loss, {"elbo": elbo_value.mean(), "kl": kl.mean(), "gsnn_log_likelihood": gsnn_value.mean()}

    return loss_fn


@hookimpl
def register_components(register):
    """The zoo's own objectives."""
    register("objective", "elbo", elbo)
    register("objective", "beta_elbo", beta_elbo)
    register("objective", "iwae", iwae)
    register("objective", "gsnn", gsnn)
    register("objective", "hybrid", hybrid)
