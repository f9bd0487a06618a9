"""The VampPrior, the mixture prior and the hierarchy of stochastic layers, against
mathematics: numpy and scipy densities, closed-form KLs and an exact Gaussian marginal."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import special, stats

from vae_zoo_plugins.families.mixture_priors import diagonal_gaussian_log_densities, make_mixture_prior, make_vampprior
from vae_zoo_plugins.base.mlp import make_mlp_encoder
from zoo.core.hierarchy import LayeredLatent
from zoo.core.divergence import kl_divergence
from zoo.core.model import LatentVariableModel

X_SHAPE = (3, 3, 1)


def small_encoder(latent=2, seed=0):
    return make_mlp_encoder(X_SHAPE, None, latent, nnx.Rngs(seed), hidden=(8,))


def test_vampprior_density_is_the_log_mean_of_the_encoders_gaussians():
    encoder = small_encoder()
    prior = make_vampprior(encoder, X_SHAPE, None, nnx.Rngs(1), num_pseudo_inputs=7, init_mean=0.5, init_std=0.3)
    z = jax.random.normal(jax.random.key(2), (5, 2)) * 1.5
    ours = np.asarray(prior(None, 5).log_prob(z))
    pseudo_inputs = np.clip(np.asarray(prior.pseudo_inputs[...]), 0, 1)
    q = encoder(jnp.asarray(pseudo_inputs), None)
    loc, scale = np.asarray(q.loc, np.float64), np.asarray(q.scale_diag, np.float64)
    densities = np.array(
        [
            [
                stats.multivariate_normal(loc[k], np.diag(scale[k] ** 2)).logpdf(np.asarray(z[b], np.float64))
                for k in range(7)
            ]
            for b in range(5)
        ]
    )
    np.testing.assert_allclose(ours, special.logsumexp(densities, axis=1) - np.log(7), rtol=1e-5, atol=1e-4)


def test_vampprior_samples_follow_its_density():
    encoder = small_encoder(latent=1)
    prior = make_vampprior(encoder, X_SHAPE, None, nnx.Rngs(3), num_pseudo_inputs=3, init_mean=0.5, init_std=0.5)
    distribution = prior(None, 1)
    samples = np.asarray(distribution.sample(seed=jax.random.key(0), sample_shape=(40000,)))[:, 0, 0]
    # A histogram of the samples against the density at the bin centres.
    counts, edges = np.histogram(samples, bins=30, density=True)
    centres = (edges[:-1] + edges[1:]) / 2
    density = np.exp(np.asarray(distribution.log_prob(jnp.asarray(centres)[:, None, None])))[:, 0]
    assert np.max(np.abs(counts - density)) < 0.05 * density.max() + 0.02
    np.testing.assert_allclose(np.mean(samples), float(distribution.mean()[0, 0]), atol=0.03)


def test_vampprior_with_one_pseudo_input_kl_converges_to_the_closed_form():
    encoder = small_encoder()
    prior = make_vampprior(encoder, X_SHAPE, None, nnx.Rngs(4), num_pseudo_inputs=1, init_mean=0.4, init_std=0.2)
    x = jax.random.uniform(jax.random.key(5), (4,) + X_SHAPE)
    q = encoder(x, None)
    p = prior(None, 4)
    single = p.components  # the one Gaussian q(z | u)
    exact = np.asarray(q.kl_divergence(distrax.MultivariateNormalDiag(single.loc[0], single.scale_diag[0])))
    z = q.sample(seed=jax.random.key(6), sample_shape=(200000,))
    monte_carlo = np.asarray(jnp.mean(q.log_prob(z) - p.log_prob(z), axis=0))
    np.testing.assert_allclose(monte_carlo, exact, rtol=0.02, atol=0.01)
    # The model's KL of a VampPrior is the one-sample estimate (no closed form): unbiased around it.
    one_sample = jax.jit(jax.vmap(lambda key: kl_divergence(q, p, q.sample(seed=key))))
    draws = one_sample(jax.random.split(jax.random.key(7), 2000))
    np.testing.assert_allclose(np.asarray(jnp.mean(draws, axis=0)), exact, rtol=0.1, atol=0.05)


def test_mixture_prior_density_equals_scipy():
    prior = make_mixture_prior(3, nnx.Rngs(0), num_components=4, init_spread=2.0)
    prior.logits[...] = jnp.array([0.3, -1.0, 0.5, 0.0])
    prior.log_scales[...] = jax.random.normal(jax.random.key(1), (4, 3)) * 0.3
    z = jax.random.normal(jax.random.key(2), (6, 3)) * 2
    ours = np.asarray(prior(None, 6).log_prob(z))
    weights = np.asarray(jax.nn.softmax(prior.logits[...]), np.float64)
    locs, scales = np.asarray(prior.locs[...], np.float64), np.exp(np.asarray(prior.log_scales[...], np.float64))
    expected = [
        np.log(
            sum(
                weights[k]
                * stats.multivariate_normal(locs[k], np.diag(scales[k] ** 2)).pdf(np.asarray(row, np.float64))
                for k in range(4)
            )
        )
        for row in z
    ]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)
    # Sampling and the mean are distrax's MixtureSameFamily.
    samples = prior(None, 2).sample(seed=jax.random.key(3), sample_shape=(50000,))
    np.testing.assert_allclose(np.asarray(samples.mean(axis=(0, 1))), weights @ locs, atol=0.05)


@pytest.mark.parametrize("smallest_log_scale", [-2.9, -7.0])  # the matmul form, and the broadcast fallback
def test_gaussian_densities_match_distrax(smallest_log_scale):
    z = jax.random.normal(jax.random.key(0), (2, 5, 4)) * 3
    locs = jax.random.normal(jax.random.key(1), (6, 4))
    scales = (
        jnp.exp(jax.random.uniform(jax.random.key(2), (6, 4), minval=-2.9, maxval=1))
        .at[0, 0]
        .set(np.exp(smallest_log_scale))
    )
    reference = distrax.MultivariateNormalDiag(locs, scales).log_prob(z[..., None, :])
    np.testing.assert_allclose(diagonal_gaussian_log_densities(z, locs, scales), reference, rtol=2e-5, atol=2e-3)


# --- A linear-Gaussian two-level model, whose marginal p(x) is exactly Gaussian ---------------

D1, D2, DX = 2, 3, 4


class LinearGaussianModel:
    """z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, S1), x | z1, z2 ~ N(B z1 + C z2 + b, Sx)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.A, self.a = rng.normal(size=(D1, D2)), rng.normal(size=D1)
        self.B, self.C, self.b = rng.normal(size=(DX, D1)), rng.normal(size=(DX, D2)), rng.normal(size=DX)
        self.s1, self.sx = np.exp(rng.normal(size=D1) * 0.3), np.exp(rng.normal(size=DX) * 0.3) * 0.5

    def joint_of_z(self):
        """Mean and covariance of z = [z1, z2] under the prior."""
        mean = np.concatenate([self.a, np.zeros(D2)])
        cov = np.block([[self.A @ self.A.T + np.diag(self.s1**2), self.A], [self.A.T, np.eye(D2)]])
        return mean, cov

    def marginal(self):
        mean, cov = self.joint_of_z()
        M = np.concatenate([self.B, self.C], axis=1)
        return stats.multivariate_normal(M @ mean + self.b, M @ cov @ M.T + np.diag(self.sx**2))

    def posterior(self, x):
        """Exact p(z | x): mean (B, D1 + D2) and covariance."""
        mean, cov = self.joint_of_z()
        M = np.concatenate([self.B, self.C], axis=1)
        gain = cov @ M.T @ np.linalg.inv(M @ cov @ M.T + np.diag(self.sx**2))
        return mean + (x - (M @ mean + self.b)) @ gain.T, cov - gain @ M @ cov


def exact_posterior_as_layers(model: LinearGaussianModel, x: np.ndarray) -> LayeredLatent:
    """q(z2 | x) q(z1 | x, z2), both the exact Gaussian conditionals of p(z | x)."""
    post_mean, post_cov = model.posterior(x)
    m1, m2 = post_mean[:, :D1], post_mean[:, D1:]
    c11, c12, c22 = post_cov[:D1, :D1], post_cov[:D1, D1:], post_cov[D1:, D1:]
    regression = c12 @ np.linalg.inv(c22)
    conditional_cov = c11 - regression @ c12.T
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    top = distrax.MultivariateNormalTri(f32(m2), f32(np.linalg.cholesky(c22)))

    def lower(z2):
        loc = f32(m1) + (z2 - f32(m2)) @ f32(regression).T
        return distrax.MultivariateNormalTri(loc, f32(np.linalg.cholesky(conditional_cov)))

    return LayeredLatent((D1, D2), top, [lower])


class Fixed(nnx.Module):
    """A component that returns what a function computes (no parameters)."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args):
        return self.function(*args)


def test_hierarchy_importance_sampling_reaches_the_exact_marginal():
    truth = LinearGaussianModel()
    x = np.random.default_rng(1).normal(size=(5, DX)) * 2
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731

    def prior(c, batch_size):
        top = distrax.MultivariateNormalDiag(jnp.zeros((batch_size, D2)), jnp.ones((batch_size, D2)))
        return LayeredLatent(
            (D1, D2),
            top,
            [lambda z2: distrax.MultivariateNormalDiag(z2 @ f32(truth.A).T + f32(truth.a), f32(truth.s1))],
        )

    def decoder(z, c):
        mean = z[:, :D1] @ f32(truth.B).T + z[:, D1:] @ f32(truth.C).T + f32(truth.b)
        return mean[:, :, None]

    likelihood = Fixed(lambda params: distrax.MultivariateNormalDiag(params[..., 0], f32(truth.sx)))
    likelihood.params_per_dim = 1
    model = LatentVariableModel(
        Fixed(lambda x_, c: exact_posterior_as_layers(truth, np.asarray(x_, np.float64))),
        Fixed(prior),
        Fixed(decoder),
        likelihood,
        x_shape=(DX,),
        c_shape=None,
        latent_dim=D1 + D2,
    )
    estimate = np.asarray(model.log_likelihood(f32(x), None, jax.random.key(0), num_samples=64))
    np.testing.assert_allclose(estimate, truth.marginal().logpdf(x), rtol=1e-4, atol=2e-3)
    # With the exact posterior the ELBO is the marginal too: KL by Monte Carlo over the layers.
    elbo = np.asarray(model.elbo(f32(x), None, jax.random.key(1)))
    np.testing.assert_allclose(elbo, truth.marginal().logpdf(x), rtol=1e-4, atol=2e-3)


def test_layered_latent_scores_what_it_samples():
    """log_prob of the concatenated sample is the sum of each layer's density; sampling returns that sum."""
    top = distrax.MultivariateNormalDiag(jnp.zeros((3, 2)), jnp.ones((3, 2)))
    lower = lambda z2: distrax.MultivariateNormalDiag(
        2.0 * z2[..., :1] * jnp.ones(z2.shape[:-1] + (1,)), 0.5 * jnp.ones(z2.shape[:-1] + (1,))
    )  # noqa: E731
    layers = LayeredLatent((1, 2), top, [lower])
    z, log_prob = layers.sample_and_log_prob(seed=jax.random.key(0), sample_shape=(7,))
    assert z.shape == (7, 3, 3) and layers.event_shape == (3,) and layers.batch_shape == (3,)
    expected = top.log_prob(z[..., 1:]) + lower(z[..., 1:]).log_prob(z[..., :1])
    np.testing.assert_allclose(layers.log_prob(z), expected, rtol=1e-6)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="2 layers need 1 conditionals"):
        LayeredLatent((1, 2), top, [])


def test_hvae_components_build_a_two_level_model(book, registry):
    from zoo.core.assembly import assemble

    experiment = assemble(
        book.resolve(
            "hvae_vampprior_paper",
            registry,
            ["dataset={name: digits}", "train.epochs=null", "prior.num_pseudo_inputs=5"],
        ),
        registry,
    )
    model = experiment.model
    x = jnp.asarray(experiment.dataset.train.images[:4])
    q, p = model.encode(x), model.prior_distribution(None, 4)
    assert isinstance(q, LayeredLatent) and isinstance(p, LayeredLatent) and model.latent_dim == 80
    # The VampPrior on z2 mixes the encoder's top layer: the same parameters, not a copy.
    assert p.top.components.loc.shape == (5, 40)
    assert model.prior.top.encoder is model.encoder
    assert np.isfinite(np.asarray(model.log_likelihood(x, None, jax.random.key(0), num_samples=8))).all()


def test_vampprior_variance_is_the_mixture_variance():
    prior = make_vampprior(
        small_encoder(), X_SHAPE, None, nnx.Rngs(8), num_pseudo_inputs=4, init_mean=0.5, init_std=0.4
    )
    distribution = prior(None, 2)
    samples = distribution.sample(seed=jax.random.key(9), sample_shape=(100000,))
    np.testing.assert_allclose(np.asarray(distribution.variance()), np.asarray(jnp.var(samples, axis=0)), rtol=0.03)


def test_traversals_of_a_hierarchy_step_in_its_sampled_spread(book, registry):
    """A LayeredLatent has no closed-form spread; plots estimate it from samples (here: z2 ~ N(0, I))."""
    from zoo.evaluation.figure_data import prior_spread, traversal_images
    from zoo.core.assembly import assemble

    small = [
        "dataset={name: digits}",
        "train.epochs=null",
        "latent_dim=[3, 4]",
        "encoder.hidden=[16]",
        "decoder.hidden=[16]",
        "prior.hidden=[16]",
    ]
    experiment = assemble(book.resolve("hvae_paper", registry, small), registry)
    spread = prior_spread(experiment.model.prior_distribution(None, 1))
    assert spread.shape == (1, 7)
    np.testing.assert_allclose(spread[0, 3:], 1.0, atol=0.06)  # the top layer is N(0, I)
    images, labels = traversal_images(
        experiment.model, experiment.condition, experiment.dataset, [0, 5], np.array([-2.0, 0.0, 2.0])
    )
    assert images.shape == (1, 2, 3, 8, 8, 1) and np.isfinite(images).all()
