"""The KL term the model's ELBO uses where distrax has no closed form (a VampPrior, a mixture, a
flow, a hierarchy): the one-sample estimate log q(z | x) - log p(z) at z ~ q must average to
KL(q || p). Found untested by the mutation check (issue 32): the estimate with its sign flipped
passed every test that concerns it, which checked `zoo.kl_divergence` but not the path the
objectives take (`LatentVariableModel.elbo_terms`)."""

import jax
import numpy as np
from flax import nnx

import zoo

DATA, LATENT, BATCH, DRAWS = 6, 2, 4, 4000


def gaussian_kl(q_loc, q_scale, p_loc, p_scale):
    """KL(N(q_loc, q_scale^2) || N(p_loc, p_scale^2)) of diagonal Gaussians, summed over the last axis."""
    q_loc, q_scale, p_loc, p_scale = (np.asarray(a, np.float64) for a in (q_loc, q_scale, p_loc, p_scale))
    ratio = (q_scale / p_scale) ** 2
    return 0.5 * np.sum(ratio + ((q_loc - p_loc) / p_scale) ** 2 - 1.0 - np.log(ratio), axis=-1)


def test_the_elbo_kl_of_a_prior_without_a_closed_form_averages_to_the_kl(registry):
    # A VampPrior of one pseudo-input u is the Gaussian q(z | u), whose KL has a closed form here
    # but not in distrax (the VampPrior is a mixture to it), so the model estimates it by sampling.
    recipe = {
        "latent_dim": LATENT,
        "encoder": {"name": "mlp", "hidden": (8,)},
        "decoder": {"name": "mlp", "hidden": (8,)},
        "prior": {"name": "vampprior", "num_pseudo_inputs": 1, "init_mean": 0.4, "init_std": 0.2},
        "likelihood": {"name": "bernoulli"},
    }
    model = zoo.build_model(recipe, registry, x_shape=(DATA,), c_shape=None, rngs=nnx.Rngs(0))
    x = (np.random.default_rng(0).uniform(size=(BATCH, DATA)) < 0.5).astype(np.float32)
    q, component = model.encode(x), model.prior_distribution(None, BATCH).components
    exact = gaussian_kl(q.loc, q.scale_diag, component.loc[0], component.scale_diag[0])
    one_sample = jax.jit(jax.vmap(lambda key: model.elbo_terms(x, None, key).kl))
    estimates = np.asarray(one_sample(jax.random.split(jax.random.key(1), DRAWS)), np.float64)
    assert np.all(exact > 0.05), "a KL this small would not tell the estimate from its negation"
    np.testing.assert_allclose(estimates.mean(axis=0), exact, rtol=0.1, atol=0.02)
