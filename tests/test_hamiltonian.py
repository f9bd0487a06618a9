"""The Hamiltonian VAE (issue 29): the leapfrog map keeps volume (log-determinant 0 by autodiff),
the tempered flow scales it by (d/2) log beta_0, and the paper's simplified bound equals the
bound on the extended space written out with Gaussian densities from scipy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_zoo_plugins.families.hamiltonian import flow, hamiltonian_bound, inverse_temperatures, leapfrog
from zoo.cli.main import main

D = 3


def potential(z: jax.Array) -> jax.Array:
    """A non-Gaussian potential U(z) = -log p(x, z) for one example: a quartic bowl with a tilt."""
    return jnp.sum(0.5 * jnp.square(z) + 0.1 * z**4 + 0.3 * z)


grad_potential = jax.grad(potential)
EPS = jnp.array([0.3, 0.1, 0.2])


def log_abs_det(fn, z: jax.Array, rho: jax.Array) -> float:
    """log |det d(z', rho') / d(z, rho)| of fn at (z, rho), by forward-mode autodiff."""
    joint = lambda v: jnp.concatenate(fn(v[:D], v[D:]))  # noqa: E731
    return float(jnp.linalg.slogdet(jax.jacfwd(joint)(jnp.concatenate([z, rho])))[1])


def test_the_leapfrog_step_keeps_volume():
    z, rho = jnp.array([0.4, -1.2, 2.0]), jnp.array([1.0, 0.5, -0.3])
    assert log_abs_det(lambda a, b: leapfrog(grad_potential, a, b, EPS), z, rho) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("beta0", [1.0, 0.5, 0.1])
def test_tempering_scales_volume_by_beta0_to_the_d_over_2(beta0):
    betas = inverse_temperatures(jnp.array(beta0), 4)
    assert float(betas[0]) == pytest.approx(beta0) and float(betas[-1]) == pytest.approx(1.0)
    z, rho = jnp.array([0.4, -1.2, 2.0]), jnp.array([1.0, 0.5, -0.3])
    det = log_abs_det(lambda a, b: flow(grad_potential, a, b, EPS, betas), z, rho)
    assert det == pytest.approx(D / 2 * math.log(beta0), abs=1e-4)


def test_the_papers_bound_is_the_extended_space_bound():
    # log p(x, z_K) + log N(rho_K; 0, I) - [log q0(z0) + log N(rho_0; 0, I / beta0) - (d/2) log beta0].
    rng = np.random.default_rng(0)
    beta0, log_q0 = 0.3, -4.2
    gamma0 = rng.normal(size=D)
    rho0 = gamma0 / math.sqrt(beta0)
    z_end, rho_end = flow(
        grad_potential, jnp.array(rng.normal(size=D)), jnp.array(rho0), EPS, inverse_temperatures(jnp.array(beta0), 3)
    )
    log_joint_end = -float(potential(z_end))
    extended = (
        log_joint_end
        + stats.multivariate_normal(np.zeros(D), np.eye(D)).logpdf(np.asarray(rho_end))
        - (log_q0 + stats.multivariate_normal(np.zeros(D), np.eye(D) / beta0).logpdf(rho0) - D / 2 * math.log(beta0))
    )
    paper = float(hamiltonian_bound(log_joint_end, rho_end, log_q0, jnp.array(gamma0)))
    assert paper == pytest.approx(extended, abs=1e-4)


def test_without_steps_of_any_size_the_bound_is_the_elbo():
    # eps -> 0 leaves z_K = z_0 and, after tempering to beta_K = 1, rho_K = gamma_0: log p(x, z_0) - log q0(z_0).
    gamma0, z0 = jnp.array([0.2, -0.7, 1.1]), jnp.array([0.5, 0.1, -0.4])
    beta0 = jnp.array(0.4)
    z_end, rho_end = flow(grad_potential, z0, gamma0 / jnp.sqrt(beta0), jnp.zeros(D), inverse_temperatures(beta0, 5))
    bound = hamiltonian_bound(-potential(z_end), rho_end, -1.5, gamma0)
    assert float(bound) == pytest.approx(float(-potential(z0) + 1.5), abs=1e-5)


def test_zero_leapfrog_steps_is_one_error_line(tmp_path, capsys):
    code = main(["train", "hamiltonian_vae", "--set", "objective.leapfrog_steps=0", "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("zoo: error:") and "leapfrog_steps" in err[0], err
    assert not (tmp_path / "run").exists()
