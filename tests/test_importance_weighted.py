"""MIWAE, CIWAE and PIWAE (plugins/families/importance_weighted.py): each bound with M = 1 or K = 1
reduces to the IWAE or ELBO bound computed independently in numpy, and PIWAE trains its encoder and
decoder on their own bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.core.groups import parameter_groups
from zoo.core.objectives import iwae
from vae_zoo_plugins.families.importance_weighted import ciwae, ciwae_bound, iwae_bound, miwae, miwae_bound, piwae


def numpy_iwae(log_w):
    """log (1/K) sum_k w_k over axis 0, in float64 with the max taken out."""
    log_w = np.asarray(log_w, np.float64)
    top = log_w.max(axis=0)
    return top + np.log(np.mean(np.exp(log_w - top), axis=0))


def numpy_elbo(log_w):
    return np.mean(np.asarray(log_w, np.float64), axis=0)


LOG_W = np.random.default_rng(0).normal(-90.0, 3.0, size=(5, 7, 6))  # (M, K, B)


def test_miwae_with_one_estimate_is_iwae_and_with_one_sample_the_elbo():
    np.testing.assert_allclose(miwae_bound(jnp.asarray(LOG_W[:1])), numpy_iwae(LOG_W[0]), rtol=1e-6)
    np.testing.assert_allclose(miwae_bound(jnp.asarray(LOG_W[:, :1])), numpy_elbo(LOG_W[:, 0]), rtol=1e-6)
    # In general: the mean over M of IWAE_K.
    expected = np.mean([numpy_iwae(LOG_W[m]) for m in range(5)], axis=0)
    np.testing.assert_allclose(miwae_bound(jnp.asarray(LOG_W)), expected, rtol=1e-6)


def test_ciwae_at_its_ends_is_the_elbo_and_iwae():
    np.testing.assert_allclose(ciwae_bound(jnp.asarray(LOG_W[0]), 1.0), numpy_elbo(LOG_W[0]), rtol=1e-6)
    np.testing.assert_allclose(ciwae_bound(jnp.asarray(LOG_W[0]), 0.0), numpy_iwae(LOG_W[0]), rtol=1e-6)
    mixed = 0.3 * numpy_elbo(LOG_W[0]) + 0.7 * numpy_iwae(LOG_W[0])
    np.testing.assert_allclose(ciwae_bound(jnp.asarray(LOG_W[0]), 0.3), mixed, rtol=1e-6)
    # One sample: every bound is that sample's ELBO.
    np.testing.assert_allclose(ciwae_bound(jnp.asarray(LOG_W[0, :1]), 0.3), LOG_W[0, 0], rtol=1e-6)


def test_piwae_decoder_bound_is_iwae_over_every_sample():
    flat = LOG_W.reshape(35, 6)
    np.testing.assert_allclose(iwae_bound(jnp.asarray(LOG_W)), numpy_iwae(flat), rtol=1e-6)


def test_the_objectives_with_m_or_k_one_are_the_iwae_and_elbo_of_the_same_samples(tiny):
    model, batch = tiny
    rng = jax.random.key(5)
    log_w = np.asarray(model.log_importance_weights(batch.x, batch.c, rng, 6))  # (6, B), the objectives' draw
    loss, _ = miwae(num_estimates=1, num_samples=6)(model, batch, rng)
    assert float(loss) == pytest.approx(-numpy_iwae(log_w).mean(), rel=1e-5)
    assert float(loss) == pytest.approx(float(iwae(num_samples=6)(model, batch, rng)[0]), rel=1e-6)
    loss, _ = miwae(num_estimates=6, num_samples=1)(model, batch, rng)
    assert float(loss) == pytest.approx(-numpy_elbo(log_w).mean(), rel=1e-5)
    loss, _ = ciwae(beta=1.0, num_samples=6)(model, batch, rng)
    assert float(loss) == pytest.approx(-numpy_elbo(log_w).mean(), rel=1e-5)
    loss, _ = ciwae(beta=0.0, num_samples=6)(model, batch, rng)
    assert float(loss) == pytest.approx(-numpy_iwae(log_w).mean(), rel=1e-5)


def test_piwae_trains_the_encoder_on_miwae_and_the_decoder_on_iwae(tiny):
    model, batch = tiny
    rng = jax.random.key(6)
    objective = piwae(num_estimates=2, num_samples=3)
    groups = {g.name: g for g in parameter_groups(objective)}
    assert groups["encoder"].owns == ("encoder",) and groups["decoder"].owns == ()
    log_w = np.asarray(model.log_importance_weights(batch.x, batch.c, rng, 6)).reshape(2, 3, -1)
    decoder_loss = float(groups["decoder"].loss(model, batch, rng)[0])
    encoder_loss = float(groups["encoder"].loss(model, batch, rng)[0])
    assert decoder_loss == pytest.approx(-numpy_iwae(log_w.reshape(6, -1)).mean(), rel=1e-5)
    assert encoder_loss == pytest.approx(-np.mean([numpy_iwae(log_w[m]) for m in range(2)], axis=0).mean(), rel=1e-5)


@pytest.mark.parametrize("make", [miwae, piwae])
def test_more_estimates_than_the_batch_is_refused(make):
    with pytest.raises(ValueError, match=r"num_estimates: M = 9 .*train.batch_size = 8"):
        make(num_estimates=9, num_samples=2, batch_size=8)
