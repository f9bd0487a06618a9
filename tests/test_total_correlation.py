"""The beta-TC-VAE's minibatch-weighted estimate of total correlation against the closed form
for a Gaussian aggregate posterior, TC = sum_d H(z_d) - H(z) = -1/2 log det(correlation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_zoo_plugins.families.total_correlation import total_correlation

CASES = {
    "two units": (np.array([[1.0, 0.8], [0.8, 1.0]]), np.array([1.0, 2.0]), 0.2),
    "three units": (np.array([[1.0, 0.7, 0.3], [0.7, 1.0, -0.4], [0.3, -0.4, 1.0]]), np.array([1.0, 2.0, 0.5]), 0.3),
}


def gaussian_aggregate(correlation, scales, relative_width, size, seed):
    """Posteriors N(mu_j, diag(sigma^2)) with centres mu_j ~ N(0, S) and one sample z_j of each:
    the aggregate posterior tends to N(0, S + diag(sigma^2)) as the batch grows."""
    rng = np.random.default_rng(seed)
    covariance = correlation * np.outer(scales, scales)
    sigma = relative_width * scales
    centres = rng.multivariate_normal(np.zeros(len(scales)), covariance, size=size)
    z = centres + sigma * rng.normal(size=centres.shape)
    aggregate = covariance + np.diag(sigma**2)
    exact = -0.5 * np.log(np.linalg.det(aggregate / np.sqrt(np.outer(np.diag(aggregate), np.diag(aggregate)))))
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return f32(z), f32(centres), f32(np.broadcast_to(sigma, centres.shape)), exact


@pytest.mark.parametrize("case", CASES)
def test_minibatch_estimate_converges_to_the_closed_form_total_correlation(case):
    estimate = jax.jit(total_correlation)
    errors = {}
    for size in (250, 3000):
        values = [float(estimate(*gaussian_aggregate(*CASES[case], size, seed)[:3])) for seed in range(3)]
        exact = gaussian_aggregate(*CASES[case], 10, 0)[3]
        errors[size] = abs(np.mean(values) - exact)
    assert exact > 0.35  # far from independence: a real signal to estimate
    assert errors[3000] < 0.03, errors
    assert errors[3000] < errors[250] or errors[250] < 0.03, errors


def test_independent_units_have_next_to_no_total_correlation():
    z, loc, scale, exact = gaussian_aggregate(np.eye(3), np.array([1.0, 0.5, 2.0]), 0.3, 3000, 4)
    assert exact == pytest.approx(0.0, abs=1e-12)
    assert abs(float(jax.jit(total_correlation)(z, loc, scale))) < 0.05  # the small positive bias of a finite batch


def test_beta_tc_with_unit_weights_is_the_elbo(book, registry):
    from flax import nnx

    import zoo
    from zoo.core.assembly import assemble

    small = ["encoder.hidden=[16]", "decoder.hidden=[16]"]
    unit = assemble(book.resolve("beta_tc_vae", registry, [*small, "objective.beta=1.0"]), registry)
    x = jnp.asarray(unit.dataset.train.images[:16])
    loss, metrics = unit.objective(unit.model, zoo.Batch(x), jax.random.key(0))
    # alpha = beta = gamma = 1: MI + TC + dimension-wise KL = log q(z|x) - log p(z), whatever q(z) is.
    np.testing.assert_allclose(float(loss), -float(metrics["elbo"]), rtol=1e-5)
    np.testing.assert_allclose(
        float(metrics["mutual_information"] + metrics["total_correlation"] + metrics["dimension_kl"]),
        float(metrics["kl"]),
        rtol=1e-4,
        atol=1e-4,
    )
    weighted = assemble(book.resolve("beta_tc_vae", registry, small), registry)
    nnx.update(weighted.model, nnx.state(unit.model))
    heavier, _ = weighted.objective(weighted.model, zoo.Batch(x), jax.random.key(0))
    np.testing.assert_allclose(float(heavier - loss), 5.0 * float(metrics["total_correlation"]), rtol=1e-4, atol=1e-4)


def test_aggregate_densities_are_distrax_log_probs_log_mean_exp():
    """Each log q(z_i) and sum_d log q(z_i,d) against numpy over distrax.Normal's
    log_prob of every pair (the reference layout the fast one replaced)."""
    import distrax

    from vae_zoo_plugins.families.total_correlation import aggregate_log_densities

    rng = np.random.default_rng(3)
    z, loc = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    scale = np.exp(0.4 * rng.normal(size=(7, 3)))
    per_unit = np.asarray(distrax.Normal(loc[None], scale[None]).log_prob(z[:, None, :]), np.float64)  # (i, j, d)
    log_mean_exp = lambda a, axis: np.log(np.mean(np.exp(a), axis=axis))  # noqa: E731
    joint, marginals = aggregate_log_densities(*(jnp.asarray(a, jnp.float32) for a in (z, loc, scale)))
    np.testing.assert_allclose(joint, log_mean_exp(per_unit.sum(-1), 1), rtol=1e-5)
    np.testing.assert_allclose(marginals, log_mean_exp(per_unit, 1).sum(-1), rtol=1e-5)
