"""The annealed-capacity VAE and DIP-VAE I and II (plugins/families/disentangling.py), each against
an independent computation: the loss formula at scripted steps, the covariance penalties in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from vae_zoo_plugins.families.disentangling import (
    annealed_vae,
    covariance_penalty,
    dip_covariance,
    dip_vae_i,
    dip_vae_ii,
)


def test_the_annealed_loss_is_the_formula_at_scripted_steps(tiny):
    model, batch = tiny
    rng = jax.random.key(3)
    _, log_likelihood, kl = model.forward(batch.x, batch.c, rng)
    log_likelihood, kl = float(np.mean(log_likelihood)), float(np.mean(kl))
    gamma, start, end, steps = 7.0, 2.0, 12.0, 100
    objective = annealed_vae(gamma=gamma, capacity_start=start, capacity_end=end, capacity_steps=steps)
    for step, capacity in ((0, 2.0), (25, 4.5), (50, 7.0), (100, 12.0), (400, 12.0), (None, 12.0)):
        loss, metrics = objective(model, batch, rng, None if step is None else jnp.asarray(step))
        assert float(metrics["capacity"]) == pytest.approx(capacity)
        assert float(loss) == pytest.approx(-log_likelihood + gamma * abs(kl - capacity), rel=1e-5)


def test_the_capacity_rises_over_the_budget_when_no_steps_are_given(tiny):
    model, batch = tiny
    objective = annealed_vae(capacity_start=0.0, capacity_end=10.0, total_steps=40)
    assert float(objective(model, batch, jax.random.key(0), jnp.asarray(10))[1]["capacity"]) == pytest.approx(2.5)


def test_a_decreasing_capacity_is_refused():
    with pytest.raises(ValueError, match="capacity_end: the capacity schedule decreases"):
        annealed_vae(capacity_start=25.0, capacity_end=5.0)


def numpy_penalty(covariance, lambda_od, lambda_d):
    total = 0.0
    for i in range(covariance.shape[0]):
        for j in range(covariance.shape[1]):
            if i == j:
                total += lambda_d * (covariance[i, i] - 1.0) ** 2
            else:
                total += lambda_od * covariance[i, j] ** 2
    return total


def test_the_covariance_penalties_equal_numpy():
    generator = np.random.default_rng(0)
    loc = generator.normal(size=(64, 4)) @ generator.normal(size=(4, 4))
    scale = np.exp(generator.normal(size=(64, 4)) * 0.3)
    first = np.cov(loc, rowvar=False, bias=True)
    second = first + np.diag(np.mean(scale**2, axis=0))
    np.testing.assert_allclose(dip_covariance(jnp.asarray(loc), jnp.asarray(scale), "i"), first, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dip_covariance(jnp.asarray(loc), jnp.asarray(scale), "ii"), second, rtol=1e-4, atol=1e-5)
    for covariance in (first, second):
        ours = float(covariance_penalty(jnp.asarray(covariance), 3.0, 20.0))
        assert ours == pytest.approx(numpy_penalty(covariance, 3.0, 20.0), rel=1e-4)


@pytest.mark.parametrize("make, kind", [(dip_vae_i, "i"), (dip_vae_ii, "ii")])
def test_the_dip_loss_is_the_negative_elbo_plus_the_penalty_of_the_posteriors(tiny, make, kind):
    model, batch = tiny
    rng = jax.random.key(4)
    q = model.encode(batch.x, batch.c)
    loc, scale = np.asarray(q.mean(), np.float64), np.asarray(q.stddev(), np.float64)
    covariance = np.cov(loc, rowvar=False, bias=True) + (np.diag(np.mean(scale**2, 0)) if kind == "ii" else 0.0)
    elbo = float(np.mean(model.elbo(batch.x, batch.c, rng)))
    loss, metrics = make(lambda_od=2.0, lambda_d=5.0)(model, batch, rng)
    assert float(metrics["dip_penalty"]) == pytest.approx(numpy_penalty(covariance, 2.0, 5.0), rel=1e-4)
    assert float(loss) == pytest.approx(-elbo + numpy_penalty(covariance, 2.0, 5.0), rel=1e-5)


def test_the_variants_resolve(book, registry):
    for variant in ("annealed_vae", "dip_vae_i", "dip_vae_ii"):
        assert book.resolve(variant, registry)["objective"]["name"] == variant
    with pytest.raises(zoo.RecipeError, match="capacity_end"):
        book.resolve("annealed_vae", registry, ["objective.capacity_end=-1"])
