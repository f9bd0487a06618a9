"""Objectives: their defining identities, independent of the networks."""

import jax
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo.core import objectives
from zoo.core.interfaces import Batch


@pytest.fixture(scope="module")
def cvae(registry):
    recipe = {
        "latent_dim": 3,
        "encoder": {"name": "mlp", "hidden": (16,)},
        "decoder": {"name": "mlp", "hidden": (16,)},
        "prior": {"name": "conditional", "hidden": (8,)},
        "likelihood": {"name": "bernoulli"},
    }
    model = zoo.build_model(recipe, registry, x_shape=(6,), c_shape=(4,), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    batch = Batch(rng.uniform(size=(10, 6)).astype(np.float32), np.eye(4, dtype=np.float32)[rng.integers(0, 4, 10)])
    return model, batch


def test_beta_elbo_is_linear_in_beta_with_slope_kl(cvae):
    model, batch = cvae
    key = jax.random.key(0)
    loss_1, metrics = objectives.beta_elbo(beta=1.0)(model, batch, key)
    loss_3, _ = objectives.beta_elbo(beta=3.0)(model, batch, key)
    assert float(loss_3 - loss_1) == pytest.approx(2.0 * float(metrics["kl"]), rel=1e-5)
    assert float(objectives.elbo()(model, batch, key)[0]) == pytest.approx(float(loss_1))
    assert float(metrics["elbo"]) == pytest.approx(float(np.mean(model.elbo(batch.x, batch.c, key))), rel=1e-6)


def test_hybrid_interpolates_cvae_and_gsnn(cvae):
    model, batch = cvae
    key = jax.random.key(1)
    ends = [float(objectives.hybrid(alpha=a)(model, batch, key)[0]) for a in (0.0, 1.0)]
    middle = float(objectives.hybrid(alpha=0.3)(model, batch, key)[0])
    assert middle == pytest.approx(0.3 * ends[1] + 0.7 * ends[0], rel=1e-5)
    _, metrics = objectives.hybrid(alpha=0.3)(model, batch, key)
    assert ends[1] == pytest.approx(-float(metrics["elbo"]), rel=1e-5)
    assert ends[0] == pytest.approx(-float(metrics["gsnn_log_likelihood"]), rel=1e-5)


def test_gsnn_ignores_the_encoder(cvae):
    model, batch = cvae
    key = jax.random.key(2)
    graphdef, params = nnx.split(model)
    grads = jax.grad(lambda p: objectives.gsnn()(nnx.merge(graphdef, p), batch, key)[0])(params)
    encoder_grads = jax.tree.leaves(grads["encoder"])
    assert all(float(np.abs(g).max()) == 0.0 for g in encoder_grads)
    assert any(float(np.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["prior"]))


def test_iwae_bound_rises_with_k_towards_the_likelihood(cvae):
    model, batch = cvae
    bounds = [
        float(np.mean([-objectives.iwae(num_samples=k)(model, batch, jax.random.key(s))[0] for s in range(20)]))
        for k in (1, 8, 64)
    ]
    assert bounds[0] < bounds[1] < bounds[2]
