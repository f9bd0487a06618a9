"""The importance-weighted bounds of Rainforth et al. 2018, "Tighter variational bounds are not
necessarily better": MIWAE, CIWAE and PIWAE, from log-weights log w = log p(x, z) - log q(z | x)
of z ~ q(z | x) (the zoo's `log_importance_parts`).

With M x K samples per example, laid out (M, K, B):

- MIWAE(M, K) = (1/M) sum_m log (1/K) sum_k w_mk: M independent IWAE_K estimates averaged (M = 1
  is IWAE_K, K = 1 the ELBO averaged over M samples);
- CIWAE(beta) = beta ELBO + (1 - beta) IWAE_K on the same K samples (beta = 1 the ELBO, 0 IWAE);
- PIWAE(M, K): the encoder trained on MIWAE(M, K), the decoder (with the prior and likelihood) on
  IWAE over all M K samples, two parameter groups with two optimisers (zoo/core/groups.py). A
  tighter bound gives the decoder a better gradient and the encoder a worse signal-to-noise
  ratio, hence a bound each. Both bounds are read from one draw of the M K samples.
"""

from __future__ import annotations

import math
from typing import Annotated, Optional

import jax
import jax.numpy as jnp

import zoo
from zoo import AtLeast, Between
from zoo.core.groups import ParameterGroup

Count = Annotated[int, AtLeast(1)]


def log_mean_exp(log_w: jax.Array, axis) -> jax.Array:
    """log of the mean of exp(log_w) over `axis` (an int or a tuple), stably."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    count = math.prod(log_w.shape[a] for a in axes)
    return jax.nn.logsumexp(log_w, axis=axes) - math.log(count)


def miwae_bound(log_w: jax.Array) -> jax.Array:
    """MIWAE(M, K) per example from log-weights (M, K, B)."""
    return jnp.mean(log_mean_exp(log_w, 1), axis=0)


def iwae_bound(log_w: jax.Array) -> jax.Array:
    """IWAE per example over every sample of log-weights (..., B) (all axes but the last)."""
    return log_mean_exp(log_w, tuple(range(log_w.ndim - 1)))


def ciwae_bound(log_w: jax.Array, beta: float) -> jax.Array:
    """CIWAE(beta) per example from log-weights (K, B): beta ELBO + (1 - beta) IWAE_K."""
    return beta * jnp.mean(log_w, axis=0) + (1.0 - beta) * iwae_bound(log_w)


def check_estimates(num_estimates: int, num_samples: int, batch_size: Optional[int]) -> None:
    if num_estimates < 1 or num_samples < 1:
        raise ValueError(f"num_estimates and num_samples: expected at least 1, got {num_estimates} and {num_samples}")
    if batch_size is not None and num_estimates > batch_size:
        raise ValueError(
            f"num_estimates: M = {num_estimates} gradient estimates per example is more than the batch "
            f"(train.batch_size = {batch_size}); the M estimates are averaged as the batch's examples are, "
            "and more of them than examples buys less than a larger batch: lower num_estimates or raise train.batch_size"
        )


def log_weights(model, batch: zoo.Batch, rng, num_estimates: int, num_samples: int) -> jax.Array:
    """log w of M x K samples z ~ q(z | x, c) per example, (M, K, B)."""
    log_px, log_ratio = model.log_importance_parts(batch.x, batch.c, rng, num_estimates * num_samples)
    return (log_px + log_ratio).reshape((num_estimates, num_samples, batch.x.shape[0]))


def bound_metrics(log_w: jax.Array) -> dict[str, jax.Array]:
    """What every bound here logs beside its loss: the ELBO and the bounds of the (M, K, B) log-weights."""
    return {
        "elbo": jnp.mean(log_w),
        "iwae_bound": iwae_bound(log_w).mean(),
        "miwae_bound": miwae_bound(log_w).mean(),
    }


def miwae(num_estimates: Count = 4, num_samples: Count = 16, batch_size: Optional[int] = None) -> zoo.Objective:
    """MIWAE(M, K) (Rainforth et al. 2018): M IWAE_K bounds averaged, M = num_estimates, K = num_samples.

    >>> loss, metrics = miwae(num_estimates=4, num_samples=16)(model, Batch(x), rng)  # doctest: +SKIP
    """
    check_estimates(num_estimates, num_samples, batch_size)

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        log_w = log_weights(model, batch, rng, num_estimates, num_samples)
        return -miwae_bound(log_w).mean(), bound_metrics(log_w)

    return loss_fn


def ciwae(beta: Annotated[float, Between(0, 1)] = 0.5, num_samples: Count = 64) -> zoo.Objective:
    """CIWAE(beta) (Rainforth et al. 2018): beta ELBO + (1 - beta) IWAE_K on the same K samples.

    >>> loss, metrics = ciwae(beta=0.5, num_samples=64)(model, Batch(x), rng)  # doctest: +SKIP
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta: expected a weight in [0, 1], got {beta}")
    check_estimates(1, num_samples, None)

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        log_w = log_weights(model, batch, rng, 1, num_samples)
        return -ciwae_bound(log_w[0], beta).mean(), {
            **bound_metrics(log_w),
            "ciwae_bound": ciwae_bound(log_w[0], beta).mean(),
        }

    return loss_fn


def piwae(num_estimates: Count = 4, num_samples: Count = 16, batch_size: Optional[int] = None) -> zoo.Objective:
    """PIWAE(M, K) (Rainforth et al. 2018): the encoder trained on MIWAE(M, K), the decoder on IWAE_MK.

    Two parameter groups, `decoder` (the decoder, prior and likelihood; the loss logged) and
    `encoder`, each with its own optimiser (`train.parameter_groups`).

    >>> loss, metrics = piwae(num_estimates=4, num_samples=16)(model, Batch(x), rng)  # doctest: +SKIP
    """
    check_estimates(num_estimates, num_samples, batch_size)

    def decoder_loss(model, batch: zoo.Batch, rng, step=None):
        log_w = log_weights(model, batch, rng, num_estimates, num_samples)
        return -iwae_bound(log_w).mean(), bound_metrics(log_w)

    def encoder_loss(model, batch: zoo.Batch, rng, step=None):
        log_w = log_weights(model, batch, rng, num_estimates, num_samples)  # the same draw: the same rng
        return -miwae_bound(log_w).mean(), {}

    decoder_loss.parameter_groups = (  # type: ignore[attr-defined]
        ParameterGroup("decoder", (), decoder_loss),
        ParameterGroup("encoder", ("encoder",), encoder_loss),
    )
    return decoder_loss


piwae.parameter_groups = ("decoder", "encoder")  # type: ignore[attr-defined]

# The conformance suite's batch is 4: no more estimates than that.
for _factory in (miwae, piwae):
    _factory.conformance = {"options": {"num_estimates": 2, "num_samples": 3}}  # type: ignore[attr-defined]
ciwae.conformance = {"options": {"num_samples": 3}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """The MIWAE, CIWAE and PIWAE bounds."""
    register("objective", "miwae", miwae)
    register("objective", "ciwae", ciwae)
    register("objective", "piwae", piwae)
