"""Objectives that match the aggregate posterior q(z) to the prior by maximum mean discrepancy:
InfoVAE (Zhao et al. 2017) and the WAE-MMD (Tolstikhin et al. 2018).

MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y), estimated without bias (U-statistic) from
the batch's z ~ q(z | x) and as many draws from the prior. Kernels, with scale C (default
2 * latent_dim, the WAE's 2 d sigma^2 for an N(0, I) prior):

- imq: C / (C + |x - y|^2), the inverse multiquadratic (the WAE's)
- rbf: exp(-|x - y|^2 / C), the Gaussian (InfoVAE's)
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import jax
import jax.numpy as jnp

import zoo
from zoo import Above, AtLeast, AtMost
from zoo.core.divergence import sample_with_kl

KERNELS = {
    "imq": lambda squared, scale: scale / (scale + squared),
    "rbf": lambda squared, scale: jnp.exp(-squared / scale),
}
Kernel = Literal["imq", "rbf"]
KernelScale = Optional[Annotated[float, Above(0)]]  # null: 2 x the latent size


def check_kernel(kernel: str, scale: Optional[float]) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel: unknown kernel {kernel!r}; known: {', '.join(sorted(KERNELS))}")
    if scale is not None and not scale > 0:
        raise ValueError(f"kernel_scale: expected a positive number, got {scale}")


def kernel_matrix(a: jax.Array, b: jax.Array, kernel: str, scale: float) -> jax.Array:
    """k(a_i, b_j) for rows a (n, D) and b (m, D)."""
    squared = jnp.sum(a * a, axis=-1)[:, None] + jnp.sum(b * b, axis=-1)[None, :] - 2.0 * a @ b.T
    return KERNELS[kernel](jnp.maximum(squared, 0.0), scale)


def mmd_squared(x: jax.Array, y: jax.Array, kernel: str = "imq", scale: Optional[float] = None) -> jax.Array:
    """The unbiased estimate of MMD^2 between the distributions of rows x (n, D) and y (m, D), n, m >= 2.

    >>> mmd_squared(posterior_samples, prior_samples, kernel="rbf")  # doctest: +SKIP
    """
    check_kernel(kernel, scale)
    scale = 2.0 * x.shape[-1] if scale is None else scale
    n, m = x.shape[0], y.shape[0]
    within_x, within_y = kernel_matrix(x, x, kernel, scale), kernel_matrix(y, y, kernel, scale)
    off_diagonal = lambda k, size: (jnp.sum(k) - jnp.trace(k)) / (size * (size - 1))  # noqa: E731  i != j only
    return off_diagonal(within_x, n) + off_diagonal(within_y, m) - 2.0 * jnp.mean(kernel_matrix(x, y, kernel, scale))


def _prior_mmd(model, batch: zoo.Batch, z: jax.Array, rng, kernel: str, scale: Optional[float]) -> jax.Array:
    """MMD^2 between the batch's posterior samples and as many prior draws."""
    prior_z = model.prior_distribution(batch.c, batch.x.shape[0]).sample(seed=rng)
    return mmd_squared(z, prior_z, kernel, scale)


def info_vae(
    alpha: Annotated[float, AtMost(1)] = 1.0,
    lambda_weight: Annotated[float, AtLeast(0)] = 1000.0,
    kernel: Kernel = "rbf",
    kernel_scale: KernelScale = None,
) -> zoo.Objective:
    """InfoVAE: E_q[log p(x|z)] - (1 - alpha) KL(q(z|x) || p(z)) - (alpha + lambda - 1) MMD^2(q(z), p(z)).

    alpha = 1 is the MMD-VAE (no per-example KL); alpha = 0, lambda = 1 the ELBO.

    >>> loss, metrics = info_vae(alpha=1.0, lambda_weight=1000.0, kernel="rbf")(model, Batch(x), rng)  # doctest: +SKIP
    """
    check_kernel(kernel, kernel_scale)
    if not alpha <= 1 or not alpha + lambda_weight - 1 >= 0:
        raise ValueError(
            f"alpha and lambda_weight: expected alpha <= 1 and alpha + lambda_weight >= 1 (weights >= 0), "
            f"got {alpha} and {lambda_weight}"
        )

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        sample_rng, prior_rng = jax.random.split(rng)
        terms = model.elbo_terms(batch.x, batch.c, sample_rng)
        z, kl, log_px = terms.z, terms.kl, terms.log_likelihood
        mmd = _prior_mmd(model, batch, z, prior_rng, kernel, kernel_scale)
        loss = -log_px.mean() + (1.0 - alpha) * kl.mean() + (alpha + lambda_weight - 1.0) * mmd
        return loss, {"elbo": (log_px - kl).mean(), "kl": kl.mean(), "mmd": mmd}

    loss_fn.selection_metric = "loss"  # type: ignore[attr-defined]  # its ELBO is not what it optimises
    return loss_fn


UNTRAINED_SCALE = (
    "WAE-MMD with a deterministic encoder trains only the mean of q(z|x), never its scale, so this metric "
    "(for the log-likelihood: its importance-sampling proposal) would rest on the scale's initial weights, not the model"
)


def wae_mmd(
    mmd_weight: Annotated[float, AtLeast(0)] = 10.0,
    kernel: Kernel = "imq",
    kernel_scale: KernelScale = None,
    deterministic: bool = True,
) -> zoo.Objective:
    """WAE-MMD: the reconstruction cost -log p(x|z) plus mmd_weight * MMD^2(q(z), p(z)).

    With `deterministic` (the paper's MNIST setting) z is the encoder's mean, else a sample of
    q(z|x) (whose ELBO is then reported beside the loss). The cost is the likelihood's, not the
    paper's squared error, so any likelihood pairs with it.

    >>> loss, metrics = wae_mmd(mmd_weight=10.0, kernel="imq")(model, Batch(x), rng)  # doctest: +SKIP
    """
    check_kernel(kernel, kernel_scale)
    if not mmd_weight >= 0:
        raise ValueError(f"mmd_weight: expected a weight >= 0, got {mmd_weight}")

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        sample_rng, prior_rng = jax.random.split(rng)
        q = model.encode(batch.x, batch.c)
        if deterministic:
            z = q.mean()
        else:
            z, kl = sample_with_kl(q, model.prior_distribution(batch.c, batch.x.shape[0]), sample_rng)
        cost = -model.decode(z, batch.c).log_prob(batch.x)
        mmd = _prior_mmd(model, batch, z, prior_rng, kernel, kernel_scale)
        metrics = {"reconstruction_cost": cost.mean(), "mmd": mmd}
        if not deterministic:  # the sample is one of q(z|x): its ELBO comes free
            metrics["elbo"] = (-cost - kl).mean()
        return cost.mean() + mmd_weight * mmd, metrics

    loss_fn.selection_metric = "loss"  # type: ignore[attr-defined]  # a deterministic encoder has no ELBO
    if deterministic:
        loss_fn.undefined_metrics = {  # type: ignore[attr-defined]
            metric: UNTRAINED_SCALE for metric in ("elbo", "kl", "log_likelihood")
        }
    return loss_fn


@zoo.hookimpl
def register_components(register):
    """The InfoVAE and WAE-MMD objectives."""
    register("objective", "info_vae", info_vae)
    register("objective", "wae_mmd", wae_mmd)
