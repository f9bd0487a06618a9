"""Latents on curved spaces (issue 29): the hyperspherical VAE's von Mises-Fisher posterior and
the Poincaré VAE's wrapped normal, each against mathematics worked out apart from the code: the
vMF's KL to the uniform by Bessel functions (scipy), its samples' component along the mean
direction against its known density and mean, the implicit gradient against the derivative of
that mean, and the wrapped normal's density integrated over a 2-D ball on a grid."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from vae_zoo_plugins.families.geometric import (
    SphericalUniform,
    VonMisesFisher,
    WrappedNormal,
    distance,
    exp_map,
    log_map,
    sample_wood,
    vmf_kl_to_uniform,
)
from zoo.cli.main import main


def mean_resultant(kappa: float, m: int) -> float:
    """E[mu . z] = A_m(kappa) = I_(m/2)(kappa) / I_(m/2-1)(kappa)."""
    return special.ive(m / 2, kappa) / special.ive(m / 2 - 1, kappa)


@pytest.mark.parametrize("m", [2, 3, 10])
def test_vmf_kl_to_the_uniform_is_the_closed_form(m):
    kappa = np.array([0.5, 3.0, 40.0])
    direction = np.zeros((3, m))
    direction[:, 0] = 1.0
    q = VonMisesFisher(jnp.asarray(direction, jnp.float32), jnp.asarray(kappa, jnp.float32))
    kl = np.asarray(q.kl_divergence(SphericalUniform(m, 3)))
    np.testing.assert_allclose(kl, vmf_kl_to_uniform(kappa, m), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(("m", "kappa"), [(3, 2.0), (5, 10.0), (16, 4.0)])
def test_samples_follow_the_density(m, kappa):
    direction = jnp.asarray(np.random.default_rng(0).normal(size=m), jnp.float32)
    direction = direction / jnp.linalg.norm(direction)
    q = VonMisesFisher(direction[None], jnp.array([kappa]))
    z = np.asarray(q.sample(seed=jax.random.key(1), sample_shape=(20000,)))[:, 0]
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, atol=1e-5)  # on the sphere
    w = z @ np.asarray(direction)
    # The component along the mean direction has density proportional to exp(kappa w) (1 - w^2)^((m-3)/2).
    density = lambda t: math.exp(kappa * (t - 1.0)) * (1.0 - t * t) ** ((m - 3) / 2)  # noqa: E731
    total = integrate.quad(density, -1.0, 1.0)[0]
    cdf = np.vectorize(lambda t: integrate.quad(density, -1.0, t)[0] / total)
    assert stats.kstest(w, cdf).pvalue > 1e-3
    assert abs(w.mean() - mean_resultant(kappa, m)) < 4 * w.std() / math.sqrt(len(w))
    # The rest is uniform around the mean direction: no preferred orthogonal direction.
    orthogonal = z - w[:, None] * np.asarray(direction)
    assert np.all(np.abs(orthogonal.mean(axis=0)) < 0.02)
    # log_prob (TFP's) agrees with the samples: its mean over them is -H, and H of w's density plus
    # the uniform part is what the KL to the uniform says: E[log q] = KL + log p_uniform.
    expected = vmf_kl_to_uniform(np.array(kappa), m) + float(SphericalUniform(m, 1).log_prob(jnp.asarray(z[:1]))[0])
    log_q = np.asarray(q.log_prob(jnp.asarray(z[:, None])))[:, 0]
    assert abs(log_q.mean() - expected) < 4 * log_q.std() / math.sqrt(len(log_q))


@pytest.mark.parametrize(("m", "kappa"), [(3, 2.0), (16, 10.0)])
def test_the_reparameterised_gradient_is_that_of_the_mean(m, kappa):
    # d/dkappa E[w] by autodiff through the samples against the derivative of A_m(kappa).
    estimate = jax.grad(lambda k: sample_wood(jax.random.key(0), jnp.full((100000,), k), m, ()).mean())(kappa)
    h = 1e-4 * kappa
    exact = (mean_resultant(kappa + h, m) - mean_resultant(kappa - h, m)) / (2 * h)
    assert float(estimate) == pytest.approx(exact, rel=0.03)


def test_exp_and_log_maps_are_inverse_and_keep_distance():
    rng = np.random.default_rng(2)
    for c in (0.5, 1.0, 3.0):
        mu = jnp.asarray(rng.uniform(-0.3, 0.3, size=(5, 3)) / math.sqrt(c), jnp.float32)
        v = jnp.asarray(rng.normal(size=(5, 3)) * 0.4, jnp.float32)
        z = exp_map(mu, v, c)
        np.testing.assert_allclose(np.asarray(log_map(mu, z, c)), np.asarray(v), atol=2e-4)
        assert np.all(np.asarray(jnp.sum(jnp.square(z), -1)) < 1.0 / c)  # inside the ball
        # The geodesic from mu with velocity v has length lambda_mu |v|.
        lam = 2.0 / (1.0 - c * np.sum(np.asarray(mu) ** 2, -1))
        np.testing.assert_allclose(
            np.asarray(distance(mu, z, c)), lam * np.linalg.norm(np.asarray(v), axis=-1), rtol=1e-3
        )


@pytest.mark.parametrize("c", [1.0, 2.5])
def test_the_wrapped_normal_integrates_to_one_on_a_2d_ball(c):
    q = WrappedNormal(jnp.array([[0.3, -0.2]]) / math.sqrt(c), jnp.array([[0.5, 0.8]]), c)
    n = 1200  # a polar grid of the ball of radius 1/sqrt(c), against its Riemannian volume lambda^2 dz
    radius = 1.0 / math.sqrt(c)
    r = (np.arange(n) + 0.5) / n * radius
    theta = (np.arange(n) + 0.5) / n * 2 * np.pi
    rr, tt = np.meshgrid(r, theta, indexing="ij")
    points = np.stack([rr * np.cos(tt), rr * np.sin(tt)], axis=-1).reshape(-1, 1, 2)
    density = np.exp(np.asarray(q.log_prob(jnp.asarray(points, jnp.float32)), np.float64))[:, 0]
    volume = (2.0 / (1.0 - c * np.sum(points[:, 0] ** 2, -1))) ** 2
    total = np.sum(density * volume * rr.reshape(-1)) * (radius / n) * (2 * np.pi / n)
    assert total == pytest.approx(1.0, abs=5e-3)


def test_wrapped_normal_samples_lie_at_the_gaussian_distance():
    # z = exp_mu(v / lambda_mu) lies at geodesic distance |v| from mu: for v ~ N(0, s^2 I_3), |v| / s is chi(3).
    mu, s = jnp.array([[0.2, 0.1, -0.4]]), 0.7
    q = WrappedNormal(mu, jnp.full((1, 3), s), 1.0)
    z = q.sample(seed=jax.random.key(3), sample_shape=(20000,))
    d = np.asarray(distance(jnp.broadcast_to(mu, z.shape), z, 1.0))[:, 0] / s
    assert stats.kstest(d, stats.chi(3).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("latent_dim=1", "a von Mises-Fisher posterior needs latent_dim of at least 2"),
        ("encoder.curvature=0", "curvature"),
    ],
)
def test_bad_geometry_is_one_error_line(override, message, tmp_path, capsys):
    variant = "svae" if override.startswith("latent_dim") else "poincare_vae"
    code = main(["train", variant, "--set", override, "--set", "train.steps=1", "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("zoo: error:") and message in err[0], err
    assert not (tmp_path / "run").exists()
