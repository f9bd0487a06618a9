"""Priors p(z | c): the standard normal, and the conditional prior network of Sohn et al. 2015."""

from __future__ import annotations

from typing import Annotated, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo import Above
from vae_zoo_plugins.layers.dense import MLP, DiagonalGaussianHead, size


class StandardNormalPrior(nnx.Module):
    """N(0, I) over z; no parameters, ignores c (the prior of the VAE and of the blog's CVAE)."""

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> distrax.MultivariateNormalDiag:
        shape = (batch_size, self.latent_dim)
        return distrax.MultivariateNormalDiag(jnp.zeros(shape), jnp.ones(shape))


class ConditionalPrior(nnx.Module):
    """p(z | c) = N(mu(c), diag(sigma(c)^2)), the prior network of Sohn et al. 2015."""

    def __init__(self, c_shape, latent_dim, hidden, activation, fixed_scale, *, rngs):
        self.trunk = MLP(size(c_shape), hidden, activation, rngs=rngs)
        self.head = DiagonalGaussianHead(hidden[-1] if hidden else size(c_shape), latent_dim, rngs=rngs)
        self.fixed_scale = fixed_scale

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> distrax.MultivariateNormalDiag:
        assert c is not None, "a conditional prior needs c"  # its factory refuses a model without a condition
        distribution = self.head(self.trunk(c.reshape((c.shape[0], -1))))
        if self.fixed_scale is None:
            return distribution
        # A fixed, tiny scale makes z = mu(c): Sohn et al.'s deterministic baseline network.
        loc = distribution.mean()
        return distrax.MultivariateNormalDiag(loc, jnp.full(loc.shape, self.fixed_scale, loc.dtype))

    def dense_network(self) -> zoo.DenseNetwork:
        """Its layers as arrays, for `zoo export-web` (zoo.core.interfaces.DenseExportable)."""
        heads = self.head.dense_heads()
        if self.fixed_scale is not None:
            return zoo.DenseNetwork(
                self.trunk.dense_layers(),
                self.trunk.activation,
                {"loc": heads["loc"]},
                fixed_scale=float(self.fixed_scale),
            )
        return zoo.DenseNetwork(self.trunk.dense_layers(), self.trunk.activation, heads)


def make_standard_normal_prior(latent_dim) -> StandardNormalPrior:
    """The standard normal prior N(0, I).

    >>> prior = make_standard_normal_prior(4)  # doctest: +SKIP
    """
    return StandardNormalPrior(latent_dim)


def make_conditional_prior(
    latent_dim,
    c_shape,
    rngs,
    hidden: Sequence[int] = (256,),
    activation: str = "relu",
    fixed_scale: Optional[Annotated[float, Above(0)]] = None,
) -> ConditionalPrior:
    """Conditional prior network p(z | c) of Sohn et al.; needs a condition.

    With `fixed_scale` the network gives only the mean and the scale is that
    constant (a tiny one turns the prior and decoder into a deterministic network).

    >>> prior = make_conditional_prior(4, (10,), nnx.Rngs(0))  # doctest: +SKIP
    """
    if c_shape is None:
        raise zoo.ModelBuildError(
            "prior 'conditional' models p(z | c) and needs a condition; the recipe has none "
            "(set condition: {name: onehot_label}, or use prior standard_normal)"
        )
    if fixed_scale is not None and not fixed_scale > 0:
        raise ValueError(f"fixed_scale must be positive, got {fixed_scale}")
    return ConditionalPrior(tuple(c_shape), latent_dim, tuple(hidden), activation, fixed_scale, rngs=rngs)


@zoo.hookimpl
def register_components(register):
    """Standard normal and conditional priors."""
    register("prior", "standard_normal", make_standard_normal_prior)
    register("prior", "conditional", make_conditional_prior)
