"""The ladder VAE: the precision-weighted merge is the normalised product of two Gaussians, and
the posterior's lower layers merge the bottom-up Gaussian with the prior's own p(z_l | z_{l+1})."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_zoo_plugins.families.ladder import LadderEncoder, precision_weighted
from zoo.core.hierarchy import LayeredLatent


def test_precision_weighted_merge_is_the_normalised_product_of_the_gaussians():
    rng = np.random.default_rng(0)
    loc_a, loc_b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)) * 2
    scale_a, scale_b = np.exp(rng.normal(size=(3, 4)) * 0.5), np.exp(rng.normal(size=(3, 4)) * 0.5)
    merged = precision_weighted(
        distrax.MultivariateNormalDiag(jnp.asarray(loc_a, jnp.float32), jnp.asarray(scale_a, jnp.float32)),
        distrax.MultivariateNormalDiag(jnp.asarray(loc_b, jnp.float32), jnp.asarray(scale_b, jnp.float32)),
    )
    # N(z; a) N(z; b) = N(mu_a; mu_b, s_a^2 + s_b^2) N(z; merged), unit by unit, at any z.
    z = rng.normal(size=(5, 3, 4)) * 2
    product = stats.norm(loc_a, scale_a).logpdf(z) + stats.norm(loc_b, scale_b).logpdf(z)
    normaliser = stats.norm(loc_b, np.sqrt(scale_a**2 + scale_b**2)).logpdf(loc_a)
    expected = (product - normaliser).sum(axis=-1)
    np.testing.assert_allclose(np.asarray(merged.log_prob(jnp.asarray(z, jnp.float32))), expected, rtol=1e-5, atol=1e-4)
    # Batch shapes broadcast: one bottom-up Gaussian per example against a top-down one per sample.
    wide = precision_weighted(merged, distrax.MultivariateNormalDiag(jnp.zeros((7, 3, 4)), jnp.ones((7, 3, 4))))
    assert wide.batch_shape == (7, 3)


def test_ladder_posterior_merges_with_the_priors_own_conditionals(book, registry):
    from zoo.core.assembly import assemble

    small = ["latent_dim=[3, 2]", "encoder.hidden=[16]", "decoder.hidden=[16]"]
    model = assemble(book.resolve("ladder_vae", registry, small), registry).model
    assert isinstance(model.encoder, LadderEncoder)
    assert model.prior.lower is model.encoder.top_down  # shared, not copied
    x = jax.random.bernoulli(jax.random.key(0), 0.3, (4, 8, 8, 1)).astype(jnp.float32)
    q, p = model.encode(x), model.prior_distribution(None, 4)
    assert isinstance(q, LayeredLatent) and q.sizes == (3, 2) and model.latent_dim == 5
    z2 = jax.random.normal(jax.random.key(1), (4, 2))
    bottom_up = model.encoder.bottom_up(x)
    lower_q, lower_p = q.conditionals[0](z2), p.conditionals[0](z2)
    precision = bottom_up[0].scale_diag ** -2 + lower_p.scale_diag**-2
    np.testing.assert_allclose(lower_q.scale_diag, precision**-0.5, rtol=1e-5)
    np.testing.assert_allclose(
        lower_q.loc,
        (bottom_up[0].loc * bottom_up[0].scale_diag ** -2 + lower_p.loc * lower_p.scale_diag**-2) / precision,
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(q.top.loc, bottom_up[1].loc)
    assert np.isfinite(np.asarray(model.log_likelihood(x, None, jax.random.key(2), num_samples=8))).all()


def test_ladder_prior_needs_the_ladder_encoder(book, registry):
    import zoo
    from zoo.core.assembly import assemble

    with pytest.raises(
        zoo.ModelBuildError, match="prior 'ladder' shares the top-down networks of encoder 'ladder_mlp'"
    ):
        assemble(book.resolve("ladder_vae", registry, ["encoder={name: mlp, hidden: [16]}"]), registry)
