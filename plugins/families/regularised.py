"""Regularised deterministic autoencoders (Ghosh et al. 2020, "From variational to deterministic
autoencoders"), RAE-L2 and RAE-GP, and the sampler they need: a Gaussian mixture fitted to the
training codes after training (`fitted_gmm`, a prior with `fit_after_training`).

The encoder is deterministic, z = mu(x), the mean of the recipe's Gaussian encoder. The loss is
the reconstruction cost -log p(x | z) (the likelihood's, so any likelihood pairs with it; the
paper's is the squared error, a Gaussian's) + beta/2 |z|^2 + the decoder's regulariser:

- rae_l2: lambda |theta_decoder|^2, weight decay on the decoder's parameters;
- rae_gp: lambda |grad_z D(z)|_F^2, the squared Frobenius norm of the decoder's Jacobian, estimated
  without bias from one random projection per step: E_v |v^T J|^2 = |J|_F^2 for v ~ N(0, I).

Nothing ties z to a prior while training, so sampling needs a density fitted to the codes after
it (the paper's ex-post density estimation, a 10-component GMM). The encoder's scale is never
trained, so there is no posterior: the ELBO, KL and the importance-sampled log-likelihood are
declared not defined (as for WAE-MMD), and the best checkpoint is chosen by the loss.
"""

from __future__ import annotations

from typing import Annotated, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import zoo
from zoo import AtLeast
from vae_zoo_plugins.families.mixture_priors import DiagonalGaussianMixture
from vae_zoo_plugins.samplers.fitting import posterior_means

Weight = Annotated[float, AtLeast(0)]

NO_POSTERIOR = (
    "not defined for a regularised autoencoder (RAE): its encoder is deterministic, z = mu(x), and the "
    "scale of q(z | x) is never trained, so there is no posterior to bound log p(x) with or to sample from"
)


def embedding_penalty(z: jax.Array) -> jax.Array:
    """1/2 |z|^2 per example: keeps the codes near the origin (the RAE's stand-in for the KL)."""
    return 0.5 * jnp.sum(jnp.square(z), axis=-1)


def decoder_weight_norm(model) -> jax.Array:
    """|theta|^2, the sum of squares of every parameter of the decoder."""
    return sum(
        (jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(nnx.state(model.decoder, nnx.Param))), jnp.zeros(())
    )


def decoder_jacobian_norm(model, z: jax.Array, c: Optional[jax.Array], rng: jax.Array) -> jax.Array:
    """|d D(z) / dz|_F^2 per example, estimated by |v^T J|^2 with v ~ N(0, I) (one vector-Jacobian product)."""
    outputs, pullback = jax.vjp(lambda codes: model.decoder(codes, c), z)
    (projected,) = pullback(jax.random.normal(rng, outputs.shape, outputs.dtype))
    return jnp.sum(jnp.square(projected), axis=-1)


def rae(regulariser: str, beta: float, decoder_weight: float):
    """The RAE loss with the decoder regulariser `regulariser` ("l2" or "gp")."""
    if not beta >= 0 or not decoder_weight >= 0:
        raise ValueError(f"beta and decoder_weight: expected weights >= 0, got {beta} and {decoder_weight}")

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        z = model.encode(batch.x, batch.c).mean()
        cost = -model.decode(z, batch.c).log_prob(batch.x).mean()
        embedding = embedding_penalty(z).mean()
        if regulariser == "l2":
            regularisation = decoder_weight_norm(model)
        else:
            regularisation = decoder_jacobian_norm(model, z, batch.c, rng).mean()
        loss = cost + beta * embedding + decoder_weight * regularisation
        return loss, {"reconstruction_cost": cost, "embedding_norm": embedding, "decoder_regulariser": regularisation}

    loss_fn.selection_metric = "loss"  # type: ignore[attr-defined]  # no ELBO: a deterministic encoder
    loss_fn.undefined_metrics = {metric: NO_POSTERIOR for metric in ("elbo", "kl", "log_likelihood")}  # type: ignore[attr-defined]
    return loss_fn


def rae_l2(beta: Weight = 1e-4, decoder_weight: Weight = 1e-7) -> zoo.Objective:
    """RAE-L2 (Ghosh et al. 2020): reconstruction + beta/2 |z|^2 + decoder_weight |theta_decoder|^2, z = mu(x).

    Pair it with prior `fitted_gmm` to sample. Defaults: Pythae's.

    >>> loss, metrics = rae_l2(beta=1e-4, decoder_weight=1e-7)(model, Batch(x), rng)  # doctest: +SKIP
    """
    return rae("l2", beta, decoder_weight)


def rae_gp(beta: Weight = 1e-4, decoder_weight: Weight = 1e-7) -> zoo.Objective:
    """RAE-GP (Ghosh et al. 2020): reconstruction + beta/2 |z|^2 + decoder_weight |dD(z)/dz|_F^2, z = mu(x).

    Pair it with prior `fitted_gmm` to sample. Defaults: Pythae's.

    >>> loss, metrics = rae_gp(beta=1e-4, decoder_weight=1e-7)(model, Batch(x), rng)  # doctest: +SKIP
    """
    return rae("gp", beta, decoder_weight)


# A component fitted to fewer codes than this collapses onto them (a near-zero variance): with fewer
# codes than that per component, fewer components are fitted and the rest get no weight.
MIN_CODES_PER_COMPONENT = 10


def fit_gmm(codes: np.ndarray, num_components: int, iterations: int = 100, seed: int = 0):
    """(log weights (K,), means (K, D), scales (K, D)) of a mixture of diagonal Gaussians fitted to
    `codes` (N, D) by scikit-learn's EM (GaussianMixture, k-means start drawn with `seed`):
    deterministic for the same codes. At most N / MIN_CODES_PER_COMPONENT components get weight
    (at least one)."""
    from sklearn.mixture import GaussianMixture

    codes = np.asarray(codes, np.float64)
    count, dims = codes.shape
    k = max(1, min(num_components, count // MIN_CODES_PER_COMPONENT))
    mixture = GaussianMixture(k, covariance_type="diag", max_iter=iterations, reg_covar=1e-6, random_state=seed)
    mixture.fit(codes)
    log_weights, means, variances = np.log(mixture.weights_), mixture.means_, mixture.covariances_
    if k < num_components:  # too few codes for every component: the rest get no weight
        pad = num_components - k
        means = np.concatenate([means, np.zeros((pad, dims))])
        variances = np.concatenate([variances, np.ones((pad, dims))])
        log_weights = np.concatenate([log_weights, np.full(pad, -np.inf)])
    return log_weights, means, np.sqrt(variances)


class FittedGaussianMixturePrior(nnx.Module):
    """A mixture of `num_components` diagonal Gaussians fitted by EM to the training codes mu(x)
    after training; N(0, I) (every component the same) until then.

    Its arrays are plain variables the loss never trains: the harness fills them by
    `fit_after_training` when a trained run is loaded (zoo.Run.load), so sampling uses the fit.
    """

    def __init__(self, latent_dim: int, num_components: int):
        self.log_weights = nnx.Variable(jnp.full((num_components,), -np.log(num_components), jnp.float32))
        self.locs = nnx.Variable(jnp.zeros((num_components, latent_dim)))
        self.scales = nnx.Variable(jnp.ones((num_components, latent_dim)))

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> DiagonalGaussianMixture:
        frozen = [jax.lax.stop_gradient(v[...]) for v in (self.log_weights, self.locs, self.scales)]
        return DiagonalGaussianMixture(*frozen, batch_size)

    def fit_after_training(self, model, x: jax.Array, c: Optional[jax.Array], batch_size: int = 1000) -> None:
        """Fit the mixture by EM to the codes mu(x) of the rows of x (the training split)."""
        log_weights, means, scales = fit_gmm(posterior_means(model, x, c, batch_size), self.locs.shape[0])
        self.log_weights[...] = jnp.asarray(log_weights, jnp.float32)
        self.locs[...] = jnp.asarray(means, jnp.float32)
        self.scales[...] = jnp.asarray(scales, jnp.float32)


def make_fitted_gmm_prior(latent_dim, num_components: Annotated[int, AtLeast(1)] = 10) -> FittedGaussianMixturePrior:
    """A mixture of diagonal Gaussians fitted to the training codes after training (ex-post density estimation).

    Ghosh et al. fit 10 full-covariance components; these are diagonal, fitted by scikit-learn's
    GaussianMixture. N(0, I) while training. Registered twice: `fitted_gmm`, the RAE recipes'
    prior, and `gmm_fitted`, the same mixture under the name of the samplers fitted after training
    (`zoo sample RUN --sampler gmm_fitted`).

    >>> prior = make_fitted_gmm_prior(16, num_components=10)  # doctest: +SKIP
    """
    if num_components < 1:
        raise ValueError(f"num_components: expected at least 1, got {num_components}")
    return FittedGaussianMixturePrior(latent_dim, num_components)


make_fitted_gmm_prior.sampler = True  # type: ignore[attr-defined]
make_fitted_gmm_prior.conformance = {"options": {"num_components": 2}}  # type: ignore[attr-defined]
for _factory in (rae_l2, rae_gp):
    _factory.conformance = {"partners": {"prior": {"name": "fitted_gmm", "num_components": 2}}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """RAE-L2, RAE-GP and the Gaussian mixture fitted to their codes (also a sampler of any continuous-latent run)."""
    register("objective", "rae_l2", rae_l2)
    register("objective", "rae_gp", rae_gp)
    register("prior", "fitted_gmm", make_fitted_gmm_prior)
    register("prior", "gmm_fitted", make_fitted_gmm_prior)
