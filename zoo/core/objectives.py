"""Training objectives as pure functions `(model, batch, rng, step=None) -> (loss, metrics)`.

Each factory returns such a function; the zoo registers them under kind
`objective` as its default plugin. Losses are means over the batch of the
negated per-example bound, in nats. `step` is the training step (a traced
int), for schedules inside the objective such as the KL warm-up; evaluation
and `step=None` mean the objective after any warm-up.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import jax
import jax.numpy as jnp

from zoo.config import AtLeast, Between
from zoo.core.hookspecs import hookimpl
from zoo.core.interfaces import LATENT_KINDS, Batch, Objective
from zoo.core.optim import linear_warmup

if TYPE_CHECKING:
    from zoo.core.model import LatentVariableModel

# What an objective returns: the loss to minimise and the metrics to log, each a scalar.
Loss = tuple[jax.Array, dict[str, jax.Array]]
# A weight against the training step (optax's schedules).
Schedule = Callable[[Any], Any]


# The options every objective with a KL term shares (recipe validation checks their ranges).
WarmupSteps = Annotated[int, AtLeast(0)]
WarmupEpochs = Annotated[float, AtLeast(0)]
FreeBits = Annotated[float, AtLeast(0)]


def kl_weight_schedule(
    kl_warmup_steps: int = 0,
    kl_warmup_epochs: float = 0.0,
    steps_per_epoch: Optional[int] = None,
    total_steps: Optional[int] = None,
) -> Optional[Schedule]:
    """The KL term's weight against the step: rising linearly from 0 to 1 over the
    warm-up (given in steps or in epochs), then 1 (optax.linear_schedule).

    A warm-up as long as the training budget or longer is refused: the model
    would never be trained on its real objective.
    """
    if kl_warmup_steps < 0 or kl_warmup_epochs < 0:
        raise ValueError(
            f"kl_warmup: expected a warm-up >= 0, got {kl_warmup_steps if kl_warmup_steps < 0 else kl_warmup_epochs}"
        )
    if kl_warmup_steps and kl_warmup_epochs:
        raise ValueError("kl_warmup_steps and kl_warmup_epochs: give one of them, not both")
    steps, option = kl_warmup_steps, "kl_warmup_steps"
    if kl_warmup_epochs:
        if steps_per_epoch is None:
            raise ValueError(
                "kl_warmup_epochs needs the number of steps per epoch, known only in training; give kl_warmup_steps"
            )
        steps, option = math.ceil(kl_warmup_epochs * steps_per_epoch), "kl_warmup_epochs"
    if steps and total_steps is not None and steps >= total_steps:
        raise ValueError(
            f"{option}: the warm-up ({steps} steps) is not shorter than the training budget ({total_steps} steps)"
        )
    return linear_warmup(steps) if steps else None


def kl_weight_at(schedule: Optional[Schedule], step: Optional[jax.Array]) -> jax.Array | float:
    """The weight of the KL term at `step` (1 without a warm-up or outside training)."""
    return 1.0 if schedule is None or step is None else schedule(step)


def kl_term(kl: jax.Array, free_bits: float) -> jax.Array:
    """The batch's mean KL as the loss sees it: with free bits, no less than `free_bits` nats
    (Kingma et al. 2016, with the whole latent as one group): below it the KL gets no gradient."""
    mean = kl.mean()
    return mean if not free_bits else jnp.maximum(mean, free_bits)


def check_free_bits(free_bits: float) -> None:
    if not free_bits >= 0:
        raise ValueError(f"free_bits: expected nats >= 0, got {free_bits}")


def elbo(
    kl_warmup_steps: WarmupSteps = 0,
    kl_warmup_epochs: WarmupEpochs = 0.0,
    free_bits: FreeBits = 0.0,
    steps_per_epoch: Optional[int] = None,
    total_steps: Optional[int] = None,
) -> Objective:
    """The evidence lower bound of Kingma and Welling (one reparameterised sample).

    With a KL warm-up (Bowman et al. 2016; the VampPrior protocol uses 100
    epochs) the KL term's weight rises linearly from 0 to 1 first; with
    `free_bits` the KL term is held at no less than that many nats.

    >>> loss, metrics = elbo(kl_warmup_steps=1000)(model, Batch(x), rng, step)  # doctest: +SKIP
    """
    return beta_elbo(1.0, kl_warmup_steps, kl_warmup_epochs, free_bits, steps_per_epoch, total_steps)


def beta_elbo(
    beta: Annotated[float, AtLeast(0)] = 4.0,
    kl_warmup_steps: WarmupSteps = 0,
    kl_warmup_epochs: WarmupEpochs = 0.0,
    free_bits: FreeBits = 0.0,
    steps_per_epoch: Optional[int] = None,
    total_steps: Optional[int] = None,
) -> Objective:
    """E_q[log p(x|z,c)] - beta * KL(q || p), Higgins et al.'s beta-VAE objective.

    >>> loss, metrics = beta_elbo(beta=4.0)(model, Batch(x), rng)  # doctest: +SKIP
    """
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    check_free_bits(free_bits)
    warmup = kl_weight_schedule(kl_warmup_steps, kl_warmup_epochs, steps_per_epoch, total_steps)

    def loss_fn(model: LatentVariableModel, batch: Batch, rng: jax.Array, step: Optional[jax.Array] = None) -> Loss:
        _, log_likelihood, kl = model.forward(batch.x, batch.c, rng)
        weight = kl_weight_at(warmup, step)
        loss = -log_likelihood.mean() + beta * weight * kl_term(kl, free_bits)
        metrics = {"elbo": (log_likelihood - kl).mean(), "log_likelihood": log_likelihood.mean(), "kl": kl.mean()}
        return loss, metrics if warmup is None else {**metrics, "kl_weight": jnp.asarray(weight)}

    loss_fn.latent_kinds = LATENT_KINDS  # type: ignore[attr-defined]  # a sample and a KL: any latent that has them
    return loss_fn


def iwae(
    num_samples: Annotated[int, AtLeast(1)] = 5,
    kl_warmup_steps: WarmupSteps = 0,
    kl_warmup_epochs: WarmupEpochs = 0.0,
    steps_per_epoch: Optional[int] = None,
    total_steps: Optional[int] = None,
) -> Objective:
    """The importance-weighted bound of Burda et al. with K = num_samples.

    With a KL warm-up, each log-weight's log p(z | c) - log q(z | x, c) part is
    scaled by the warm-up weight inside the log-mean-exp (with K = 1 this is the
    warmed-up single-sample ELBO); the bound is logged unweighted.

    >>> loss, metrics = iwae(num_samples=5)(model, Batch(x), rng)  # doctest: +SKIP
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    warmup = kl_weight_schedule(kl_warmup_steps, kl_warmup_epochs, steps_per_epoch, total_steps)

    def log_mean_exp(log_w: jax.Array) -> jax.Array:
        return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)

    def loss_fn(model: LatentVariableModel, batch: Batch, rng: jax.Array, step: Optional[jax.Array] = None) -> Loss:
        log_px, log_ratio = model.log_importance_parts(batch.x, batch.c, rng, num_samples)
        log_w = log_px + log_ratio
        bound = log_mean_exp(log_w)
        metrics = {"iwae_bound": bound.mean(), "elbo": log_w.mean()}
        if warmup is None:
            return -bound.mean(), metrics
        weight = kl_weight_at(warmup, step)
        warmed = log_mean_exp(log_px + weight * log_ratio)
        return -warmed.mean(), {**metrics, "kl_weight": jnp.asarray(weight)}

    return loss_fn


def gsnn_log_likelihood(model: LatentVariableModel, batch: Batch, rng: jax.Array) -> jax.Array:
    """log p(x | z, c) at z ~ p(z | c): the Gaussian stochastic neural network's term."""
    z = model.prior_distribution(batch.c, batch.x.shape[0]).sample(seed=rng)
    return model.decode(z, batch.c).log_prob(batch.x)


# What a gsnn-trained model is not scored by: every metric computed through q(z | x, c).
UNTRAINED_ENCODER = (
    "the gsnn objective never trains the encoder q(z | x, c), so this metric, computed through it, "
    "would describe the encoder's initial weights, not the model; the log-likelihood with the prior "
    "as proposal (eval.proposals: [prior], zoo eval --prior-proposal) applies"
)


def gsnn() -> Objective:
    """Sohn et al.'s GSNN: train the prior network and decoder as a stochastic net, no encoder.

    Also the objective of the deterministic baseline (a conditional prior with a tiny fixed
    scale). Their ELBO, KL, reconstruction, active units and the posterior-proposal
    log-likelihood go through the untrained encoder and are declared not applicable.

    >>> loss, metrics = gsnn()(model, Batch(x, c), rng)  # doctest: +SKIP
    """

    def loss_fn(model: LatentVariableModel, batch: Batch, rng: jax.Array, step: Optional[jax.Array] = None) -> Loss:
        log_likelihood = gsnn_log_likelihood(model, batch, rng)
        return -log_likelihood.mean(), {"gsnn_log_likelihood": log_likelihood.mean()}

    loss_fn.selection_metric = "loss"  # type: ignore[attr-defined]  # its ELBO goes through the untrained encoder
    loss_fn.undefined_metrics = {  # type: ignore[attr-defined]
        metric: UNTRAINED_ENCODER for metric in ("elbo", "kl", "reconstruction_error", "active_units", "log_likelihood")
    }
    return loss_fn


def hybrid(
    alpha: Annotated[float, Between(0, 1)] = 0.5,
    kl_warmup_steps: WarmupSteps = 0,
    kl_warmup_epochs: WarmupEpochs = 0.0,
    free_bits: FreeBits = 0.0,
    steps_per_epoch: Optional[int] = None,
    total_steps: Optional[int] = None,
) -> Objective:
    """Sohn et al.'s hybrid: alpha * L_CVAE + (1 - alpha) * L_GSNN.

    >>> loss, metrics = hybrid(alpha=0.5)(model, Batch(x, c), rng)  # doctest: +SKIP
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    check_free_bits(free_bits)
    warmup = kl_weight_schedule(kl_warmup_steps, kl_warmup_epochs, steps_per_epoch, total_steps)

    def loss_fn(model: LatentVariableModel, batch: Batch, rng: jax.Array, step: Optional[jax.Array] = None) -> Loss:
        cvae_rng, gsnn_rng = jax.random.split(rng)
        _, log_likelihood, kl = model.forward(batch.x, batch.c, cvae_rng)
        elbo_value = log_likelihood - kl
        gsnn_value = gsnn_log_likelihood(model, batch, gsnn_rng)
        warmed = log_likelihood.mean() - kl_weight_at(warmup, step) * kl_term(kl, free_bits)
        loss = -(alpha * warmed + (1.0 - alpha) * gsnn_value.mean())
        return loss, {"elbo": elbo_value.mean(), "kl": kl.mean(), "gsnn_log_likelihood": gsnn_value.mean()}

    return loss_fn


@hookimpl
def register_components(register: Callable[..., None]) -> None:
    """The zoo's own objectives."""
    register("objective", "elbo", elbo)
    register("objective", "beta_elbo", beta_elbo)
    register("objective", "iwae", iwae)
    register("objective", "gsnn", gsnn)
    register("objective", "hybrid", hybrid)
