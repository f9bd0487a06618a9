"""The IWAE bound against an independent computation (issue 32): the importance weights of the
same key recomputed in numpy from the distributions' parameters, then log (1/K) sum_k w_k by
numpy's own log-sum-exp. An ordering of bounds over K can hold by luck; this cannot.

MIWAE, PIWAE and CIWAE (Rainforth et al. 2018) are not in the zoo yet; their bounds get the
same test when they come.
"""

import jax
import numpy as np
import pytest
from flax import nnx
from scipy.special import logsumexp

import zoo
from zoo.core import objectives
from zoo.core.interfaces import Batch

DATA, CLASSES, LATENT, BATCH = 6, 4, 3, 10


@pytest.fixture(scope="module")
def cvae(registry):
    """A small CVAE with Sohn et al.'s conditional prior, and a batch of binary data."""
    recipe = {
        "latent_dim": LATENT,
        "encoder": {"name": "mlp", "hidden": (16,)},
        "decoder": {"name": "mlp", "hidden": (16,)},
        "prior": {"name": "conditional", "hidden": (8,)},
        "likelihood": {"name": "bernoulli"},
    }
    model = zoo.build_model(recipe, registry, x_shape=(DATA,), c_shape=(CLASSES,), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(BATCH, DATA)) < 0.4).astype(np.float32)
    c = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)]
    return model, Batch(x, c)


def diagonal_gaussian_log_density(z, loc, scale):
    """log N(z; loc, diag(scale^2)), summed over the last axis."""
    z, loc, scale = (np.asarray(a, np.float64) for a in (z, loc, scale))
    return np.sum(-0.5 * ((z - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi), axis=-1)


def numpy_log_weight_parts(model, batch: Batch, key, num_samples: int):
    """(log p(x | z_k, c), log p(z_k | c) - log q(z_k | x, c)), each (K, B), in float64 from the
    parameters of q, of the prior and of the decoder's Bernoulli logits, at the K draws of q
    that `key` gives."""
    q = model.encode(batch.x, batch.c)
    prior = model.prior_distribution(batch.c, BATCH)
    z = np.asarray(q.sample(seed=key, sample_shape=(num_samples,)))  # (K, B, D)
    log_ratio = diagonal_gaussian_log_density(z, prior.loc, prior.scale_diag) - diagonal_gaussian_log_density(
        z, q.loc, q.scale_diag
    )
    conditions = np.broadcast_to(batch.c, (num_samples, BATCH, CLASSES)).reshape(-1, CLASSES)
    logits = np.asarray(model.decoder(z.reshape(-1, LATENT), conditions), np.float64).reshape(num_samples, BATCH, DATA)
    # Bernoulli: x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - log(1 + e^l).
    log_px = np.sum(batch.x * logits - np.logaddexp(0.0, logits), axis=-1)
    return log_px, log_ratio


def numpy_bound(log_w: np.ndarray) -> float:
    """The batch mean of log (1/K) sum_k exp(log_w[k])."""
    return float(np.mean(logsumexp(log_w, axis=0) - np.log(log_w.shape[0])))


@pytest.mark.parametrize("num_samples", [1, 5, 64])
def test_the_iwae_bound_is_the_log_mean_exp_of_the_importance_weights(cvae, num_samples):
    model, batch = cvae
    key = jax.random.key(7)
    log_px, log_ratio = numpy_log_weight_parts(model, batch, key, num_samples)
    log_w = log_px + log_ratio
    loss, metrics = objectives.iwae(num_samples=num_samples)(model, batch, key)
    expected = numpy_bound(log_w)
    assert -float(loss) == pytest.approx(expected, abs=1e-4)
    assert float(metrics["iwae_bound"]) == pytest.approx(expected, abs=1e-4)
    assert float(metrics["elbo"]) == pytest.approx(float(np.mean(log_w)), abs=1e-4)  # the K one-sample ELBOs
    if num_samples > 1:  # the tolerance tells the bound from the mean of the log-weights (the IWAE's ELBO)
        assert expected - float(np.mean(log_w)) > 100 * 1e-4


@pytest.mark.parametrize("step", [0, 3, 10, 25, None])
def test_the_warmup_weights_the_kl_part_inside_the_log_mean_exp(cvae, step):
    model, batch = cvae
    key, num_samples, warmup_steps = jax.random.key(8), 8, 10
    weight = 1.0 if step is None else min(step / warmup_steps, 1.0)  # linear from 0 to 1; 1 outside training
    log_px, log_ratio = numpy_log_weight_parts(model, batch, key, num_samples)
    loss, metrics = objectives.iwae(num_samples=num_samples, kl_warmup_steps=warmup_steps)(model, batch, key, step)
    # log (1/K) sum_k p(x | z_k) (p(z_k) / q(z_k | x))^w; the bound itself is logged unweighted.
    assert -float(loss) == pytest.approx(numpy_bound(log_px + weight * log_ratio), abs=1e-4)
    assert float(metrics["iwae_bound"]) == pytest.approx(numpy_bound(log_px + log_ratio), abs=1e-4)
    assert float(metrics["kl_weight"]) == pytest.approx(weight)


def test_the_bound_gains_from_k_by_a_margin_the_mean_of_the_log_weights_cannot_meet(cvae):
    # The mean of the log-weights has the same expectation for every K (the ELBO), so its K = 64
    # minus K = 1 is noise around 0; the bound gains more than a nat here.
    model, batch = cvae
    seeds = range(20)
    bound = {
        k: np.mean([-float(objectives.iwae(num_samples=k)(model, batch, jax.random.key(s))[0]) for s in seeds])
        for k in (1, 64)
    }
    assert bound[64] - bound[1] > 1.0, bound
