"""The flow posteriors (IAF, planar) against mathematics: log-determinants against the Jacobian
that jax.jacfwd computes, densities that integrate to 1 and match the samples' histogram."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vae_zoo_plugins.families.flows import (
    MADE,
    FlowPosterior,
    InverseAutoregressiveStep,
    PlanarStep,
    make_iaf_encoder,
    make_planar_encoder,
)
from zoo.core.divergence import closed_form_kl

D = 4


def strong_made(order, seed=0, scale=1.5):
    """A MADE with larger weights than its initialisation, so that the step is far from the identity."""
    made = MADE(len(order), 3, (16, 16), order, "tanh", rngs=nnx.Rngs(seed))
    for layer in (*made.layers, made.shift, made.gate):
        layer.kernel[...] = layer.kernel[...] * scale
        layer.bias[...] = jax.random.normal(jax.random.key(seed + 1), layer.bias.shape) * 0.5
    return made


def iaf_step(order, seed=0):
    return InverseAutoregressiveStep(strong_made(order, seed), jax.random.normal(jax.random.key(seed + 2), (3,)))


def planar_step(seed, dim=D, w_dot_u=None):
    keys = jax.random.split(jax.random.key(seed), 3)
    u, w = jax.random.normal(keys[0], (dim,)) * 2, jax.random.normal(keys[1], (dim,))
    if w_dot_u is not None:  # an u that breaks invertibility before the correction: w.u = w_dot_u
        u = u + (w_dot_u - jnp.dot(w, u)) * w / jnp.dot(w, w)
    return PlanarStep(u, w, jax.random.normal(keys[2], ()))


def log_abs_det_of_jacobian(bijector, z):
    return np.linalg.slogdet(np.asarray(jax.jacfwd(bijector.forward)(z), np.float64))[1]


@pytest.mark.parametrize("order", [(1, 2, 3, 4), (4, 3, 2, 1), (2, 4, 1, 3)])
def test_iaf_step_log_det_is_that_of_its_jacobian_which_is_triangular(order):
    step = iaf_step(order)
    for z in jax.random.normal(jax.random.key(5), (3, D)) * 2:
        jacobian = np.asarray(jax.jacfwd(step.forward)(z))
        # Unit d depends on unit e only through its own degree or a lower one: the masks hold.
        degree = np.array(order)
        assert np.all(jacobian[degree[:, None] < degree[None, :]] == 0)
        np.testing.assert_allclose(
            step.forward_log_det_jacobian(z), log_abs_det_of_jacobian(step, z), rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(step.inverse(step.forward(z)), z, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("w_dot_u", [None, -5.0, -1.0, 3.0])
def test_planar_step_log_det_is_that_of_its_jacobian_and_it_inverts(w_dot_u):
    step = planar_step(1, w_dot_u=w_dot_u)
    assert float(jnp.dot(step.w, step.u)) > -1.0  # u_hat: invertible whatever u was
    for z in jax.random.normal(jax.random.key(6), (3, D)) * 2:
        np.testing.assert_allclose(
            step.forward_log_det_jacobian(z), log_abs_det_of_jacobian(step, z), rtol=1e-4, atol=1e-4
        )
        y, log_det = step.forward_and_log_det(z)
        back, inverse_log_det = step.inverse_and_log_det(y)
        np.testing.assert_allclose(back, z, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-4, atol=1e-4)


def two_dimensional_flows():
    base = distrax.MultivariateNormalDiag(jnp.array([[0.3, -0.2]]), jnp.array([[0.9, 0.6]]))
    iaf = [
        InverseAutoregressiveStep(strong_made(order, seed, 1.0), jnp.ones((1, 3)))
        for seed, order in ((0, (1, 2)), (3, (2, 1)))
    ]
    planar = [
        PlanarStep(*[jnp.asarray(a)[None] for a in p])
        for p in (([1.5, 0.5], [2.0, 1.0], 0.3), ([-1.0, 1.2], [0.5, -2.0], -0.5), ([0.8, 0.8], [1.0, 1.0], 0.0))
    ]
    return {
        "iaf": FlowPosterior(base, distrax.Chain(iaf[::-1])),
        "planar": FlowPosterior(base, distrax.Chain(planar[::-1])),
    }


@pytest.mark.parametrize("flow", ["iaf", "planar"])
def test_flow_density_integrates_to_one_and_matches_its_samples(flow):
    q = two_dimensional_flows()[flow]
    edges = np.linspace(-6, 6, 241)
    centres = (edges[:-1] + edges[1:]) / 2
    grid = jnp.asarray(np.stack(np.meshgrid(centres, centres, indexing="ij"), axis=-1).reshape(-1, 1, 2), jnp.float32)
    density = np.exp(np.asarray(jax.jit(q.log_prob)(grid), np.float64)).reshape(240, 240)
    cell = (edges[1] - edges[0]) ** 2
    assert abs(density.sum() * cell - 1.0) < 5e-3
    # Samples against the density: the mass of 12 x 12 blocks of cells, as the histogram counts it.
    z, log_q = jax.jit(lambda key: q.sample_and_log_prob(seed=key, sample_shape=(200000,)))(jax.random.key(0))
    counts, _, _ = np.histogram2d(np.asarray(z[:, 0, 0]), np.asarray(z[:, 0, 1]), bins=[edges[::12], edges[::12]])
    mass = density.reshape(20, 12, 20, 12).sum(axis=(1, 3)) * cell
    assert np.max(np.abs(counts / 200000 - mass)) < 0.004
    # The sampling pass scores its samples as log_prob (through the inverse) does.
    np.testing.assert_allclose(np.asarray(q.log_prob(z[:2000])), np.asarray(log_q[:2000]), rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("make", [make_iaf_encoder, make_planar_encoder])
def test_flow_encoders_give_a_transformed_posterior_with_no_closed_form_kl(make):
    encoder = make((3, 3, 1), None, 3, nnx.Rngs(0), hidden=(8,), steps=3)
    q = encoder(jax.random.uniform(jax.random.key(0), (5, 3, 3, 1)))
    assert isinstance(q, distrax.Transformed) and q.batch_shape == (5,) and q.event_shape == (3,)
    assert closed_form_kl(q, distrax.MultivariateNormalDiag(jnp.zeros((5, 3)), jnp.ones((5, 3)))) is None
    assert q.mean().shape == (5, 3)
    with pytest.raises(ValueError, match="steps: expected at least 1 flow step, got 0"):
        make((3, 3, 1), None, 3, nnx.Rngs(0), hidden=(8,), steps=0)
