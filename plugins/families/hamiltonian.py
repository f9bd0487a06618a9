"""The Hamiltonian VAE (Caterini et al. 2018): the encoder's sample z_0 and a momentum rho_0 moved
by K leapfrog steps of Hamiltonian dynamics towards the model's own posterior, with tempering.

The Hamiltonian is H(z, rho) = -log p(x, z | c) + |rho|^2 / 2. From z_0 ~ q_0(z | x, c) (the
encoder) and rho_0 = gamma_0 / sqrt(beta_0), gamma_0 ~ N(0, I), each step k is one leapfrog step of
per-dimension step sizes eps (learned), then a tempering of the momentum, rho <- sqrt(beta_(k-1)
/ beta_k) rho, on the paper's quadratic schedule 1 / sqrt(beta_k) = (1 - 1 / sqrt(beta_0)) k^2 / K^2
+ 1 / sqrt(beta_0), which ends at beta_K = 1; beta_0 in (0, 1] is learned. The leapfrog steps keep
volume; the tempering scales it by (beta_0 / beta_K)^(d/2). So

    log q_K(z_K, rho_K) = log q_0(z_0) + log N(rho_0; 0, I / beta_0) - (d/2) log beta_0,

and the bound on the extended space, log p(x, z_K) + log N(rho_K; 0, I) - log q_K(z_K, rho_K),
simplifies to the paper's log p(x, z_K) - |rho_K|^2 / 2 - log q_0(z_0) + |gamma_0|^2 / 2
(`hamiltonian_bound`; tests/test_hamiltonian.py checks both forms and the log-determinant by
autodiff).

The flow needs log p(x, z) at every step, so it lives in the objective (`hamiltonian_elbo`, whose
step sizes and beta_0 are its own small network, `model.networks["hamiltonian"]`), not in the
encoder: evaluation's ELBO and importance-sampled likelihood are those of q_0 alone, a valid but
looser proposal; the training bound is reported as `hamiltonian_elbo`.
"""

from __future__ import annotations

from typing import Annotated, Optional

import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo import AtLeast

STEP_SIZE_INIT = 0.01  # the paper's initial leapfrog step size


class HamiltonianFlow(nnx.Module):
    """The flow's parameters: per-dimension leapfrog step sizes and the initial inverse temperature."""

    def __init__(self, latent_dim: int, tempering: bool):
        # eps = softplus(raw), beta_0 = sigmoid(raw): positive, and beta_0 in (0, 1).
        self.raw_step_size = nnx.Param(jnp.full((latent_dim,), jnp.log(jnp.expm1(STEP_SIZE_INIT))))
        self.raw_beta0 = nnx.Param(jnp.array(0.0 if tempering else 30.0))  # beta_0 = 0.5, or 1 (no tempering)
        self.tempering = tempering

    def step_size(self) -> jax.Array:
        return jax.nn.softplus(self.raw_step_size[...])

    def beta0(self) -> jax.Array:
        return jax.nn.sigmoid(self.raw_beta0[...]) if self.tempering else jnp.array(1.0)


def inverse_temperatures(beta0: jax.Array, steps: int) -> jax.Array:
    """beta_0 .. beta_K on the paper's quadratic schedule in 1 / sqrt(beta), ending at 1."""
    k = jnp.arange(steps + 1) / steps
    inverse_root = (1.0 - 1.0 / jnp.sqrt(beta0)) * jnp.square(k) + 1.0 / jnp.sqrt(beta0)
    return 1.0 / jnp.square(inverse_root)


def leapfrog(grad_potential, z: jax.Array, rho: jax.Array, eps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One leapfrog step of H = U(z) + |rho|^2 / 2: half a momentum step, a position step, half a momentum step."""
    rho = rho - 0.5 * eps * grad_potential(z)
    z = z + eps * rho
    rho = rho - 0.5 * eps * grad_potential(z)
    return z, rho


def flow(grad_potential, z0: jax.Array, rho0: jax.Array, eps: jax.Array, betas: jax.Array):
    """(z_K, rho_K): K = len(betas) - 1 leapfrog steps, each followed by the tempering of rho."""
    z, rho = z0, rho0
    for k in range(1, betas.shape[0]):  # K is small and static: unrolled
        z, rho = leapfrog(grad_potential, z, rho, eps)
        rho = rho * jnp.sqrt(betas[k - 1] / betas[k])
    return z, rho


def hamiltonian_bound(log_joint_end, rho_end, log_q0, gamma0) -> jax.Array:
    """The paper's bound per example: log p(x, z_K) - |rho_K|^2 / 2 - log q_0(z_0) + |gamma_0|^2 / 2."""
    return log_joint_end - 0.5 * jnp.sum(jnp.square(rho_end), -1) - log_q0 + 0.5 * jnp.sum(jnp.square(gamma0), -1)


def log_joint(model, x: jax.Array, c: Optional[jax.Array], z: jax.Array) -> jax.Array:
    """log p(x | z, c) + log p(z | c) per example."""
    return model.decode(z, c).log_prob(x) + model.prior_distribution(c, x.shape[0]).log_prob(z)


def hamiltonian_elbo(
    leapfrog_steps: Annotated[int, AtLeast(1)] = 5,
    tempering: bool = True,
    latent_dim: int = 1,
) -> zoo.Objective:
    """The Hamiltonian VAE's bound (Caterini et al. 2018): K leapfrog steps with tempering from the
    encoder's sample (`leapfrog_steps` K, `tempering`: a learned beta_0 < 1, else beta_0 = 1).

    >>> loss, metrics = hamiltonian_elbo(leapfrog_steps=5, latent_dim=16)(model, Batch(x), rng)  # doctest: +SKIP
    """
    if leapfrog_steps < 1:
        raise ValueError(f"leapfrog_steps: expected at least 1 leapfrog step, got {leapfrog_steps}")
    dynamics = HamiltonianFlow(latent_dim, tempering)

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        x, c = batch.x, batch.c
        z_rng, rho_rng = jax.random.split(rng)
        z0, log_q0 = model.encode(x, c).sample_and_log_prob(seed=z_rng)
        hamiltonian = model.networks["hamiltonian"]
        beta0 = hamiltonian.beta0()
        gamma0 = jax.random.normal(rho_rng, z0.shape, z0.dtype)
        # Examples are independent, so the gradient of the batch's sum is each example's own.
        grad_potential = jax.grad(lambda z: -jnp.sum(log_joint(model, x, c, z)))
        z_end, rho_end = flow(
            grad_potential,
            z0,
            gamma0 / jnp.sqrt(beta0),
            hamiltonian.step_size(),
            inverse_temperatures(beta0, leapfrog_steps),
        )
        bound = hamiltonian_bound(log_joint(model, x, c, z_end), rho_end, log_q0, gamma0)
        return -bound.mean(), {
            "hamiltonian_elbo": bound.mean(),
            "beta0": beta0,
            "step_size": hamiltonian.step_size().mean(),
        }

    loss_fn.networks = {"hamiltonian": dynamics}  # type: ignore[attr-defined]
    return loss_fn


@zoo.hookimpl
def register_components(register):
    """The Hamiltonian VAE's objective."""
    register("objective", "hamiltonian_elbo", hamiltonian_elbo)
