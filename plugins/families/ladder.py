"""The ladder VAE (Sønderby et al. 2016) on the zoo's hierarchy of stochastic layers.

A deterministic bottom-up pass gives each layer a Gaussian N(mu_hat_l, sigma_hat_l^2) from x;
the posterior then runs top-down with the generative model's own conditionals: the top layer is
q(z_L | x) = N(mu_hat_L, sigma_hat_L^2), and each lower layer the precision-weighted merge of its
bottom-up Gaussian with the prior p(z_l | z_{l+1}):

    q(z_l | z_{l+1}, x) prop. to N(mu_hat_l, sigma_hat_l^2) N(mu_p(z_{l+1}), sigma_p(z_{l+1})^2).

The top-down networks are `vae_zoo_plugins.families.hierarchical`'s p(z_l | z_{l+1}); the encoder holds them and
the prior `ladder` shares them (as a VampPrior shares the encoder). Both return a
`zoo.core.hierarchy.LayeredLatent`, so the KL (Monte Carlo) and importance sampling are the core's.
"""

from __future__ import annotations

from typing import Optional, Sequence

import distrax
import jax
from flax import nnx

import zoo
from zoo.core.hierarchy import LayeredLatent
from vae_zoo_plugins.families.hierarchical import HierarchicalPrior, Init, Network, lower_priors
from vae_zoo_plugins.layers.dense import flatten_with, size
from vae_zoo_plugins.base.priors import StandardNormalPrior


def precision_weighted(
    a: distrax.MultivariateNormalDiag, b: distrax.MultivariateNormalDiag
) -> distrax.MultivariateNormalDiag:
    """The normalised product of two diagonal Gaussians: precision 1/s_a^2 + 1/s_b^2, mean the
    precision-weighted mean of mu_a and mu_b (Sønderby et al., eq. 18-19). Batch shapes broadcast."""
    precision_a, precision_b = a.scale_diag**-2.0, b.scale_diag**-2.0
    precision = precision_a + precision_b
    loc = (a.loc * precision_a + b.loc * precision_b) / precision
    return distrax.MultivariateNormalDiag(loc, jax.lax.rsqrt(precision))


class LadderEncoder(nnx.Module):
    """q(z_L | x) prod_l q(z_l | z_{l+1}, x): bottom-up Gaussians merged with the top-down p(z_l | z_{l+1})."""

    def __init__(self, x_shape, c_shape, latent_sizes, net: Network, *, rngs: nnx.Rngs):
        self.sizes = tuple(latent_sizes)
        widths = [size(x_shape) + size(c_shape)] + [net.hidden[-1]] * (len(self.sizes) - 1)
        self.up = nnx.List([net.mlp(width, net.hidden, rngs) for width in widths])
        self.up_heads = nnx.List([net.head(net.hidden[-1], latent, rngs) for latent in self.sizes])
        self.top_down = lower_priors(self.sizes, net, rngs)  # the generative p(z_l | z_{l+1}), shared with the prior

    def bottom_up(self, x: jax.Array, c: Optional[jax.Array] = None) -> list[distrax.MultivariateNormalDiag]:
        """N(mu_hat_l, sigma_hat_l^2) for every layer, bottom first, from one deterministic pass."""
        h, gaussians = flatten_with(x, c), []
        for index in range(len(self.sizes)):
            h = self.up[index](h)
            gaussians.append(self.up_heads[index](h))
        return gaussians

    def top_posterior(self, x: jax.Array, c: Optional[jax.Array] = None) -> distrax.Distribution:
        """q(z_L | x, c): the top layer's bottom-up Gaussian."""
        return self.bottom_up(x, c)[-1]

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None) -> LayeredLatent:
        gaussians = self.bottom_up(x, c)
        conditionals = [
            lambda z_above, up=up, down=down: precision_weighted(up, down(z_above))
            for up, down in zip(gaussians[:-1], self.top_down)
        ]
        return LayeredLatent(self.sizes, gaussians[-1], conditionals)


def make_ladder_encoder(
    x_shape,
    c_shape,
    latent_sizes,
    rngs,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    gated: bool = False,
    init: Init = "lecun",
    log_variance_bounds: Optional[Sequence[float]] = None,
) -> LadderEncoder:
    """The ladder VAE's posterior (Sønderby et al. 2016); `latent_dim` a list, bottom first, e.g. [8, 8].

    Each layer's bottom-up block is dense layers `hidden` and a Gaussian head; the top-down
    networks p(z_l | z_{l+1}) are those of `hierarchical` (dense layers `hidden`), pair it with
    prior `ladder`, which uses them.

    >>> enc = make_ladder_encoder((8, 8, 1), None, (8, 8), nnx.Rngs(0), hidden=(64,))  # doctest: +SKIP
    """
    return LadderEncoder(
        x_shape, c_shape, latent_sizes, Network(hidden, activation, gated, init, log_variance_bounds), rngs=rngs
    )


def make_ladder_prior(latent_sizes, encoder) -> HierarchicalPrior:
    """p(z_L) prod p(z_l | z_{l+1}) with N(0, I) on top and the ladder encoder's top-down networks.

    >>> prior = make_ladder_prior((8, 8), make_ladder_encoder((8, 8, 1), None, (8, 8), nnx.Rngs(0)))  # doctest: +SKIP
    """
    if not isinstance(encoder, LadderEncoder):
        raise zoo.ModelBuildError(
            f"prior 'ladder' shares the top-down networks of encoder 'ladder_mlp'; the recipe's encoder is {type(encoder).__name__}"
        )
    return HierarchicalPrior(latent_sizes, StandardNormalPrior(latent_sizes[-1]), encoder.top_down)


# The conformance suite (zoo.testing) checks each in a ladder of two layers (the prior shares the encoder's networks).
LADDER_PARTNERS = {"latent_dim": [2, 2], "decoder": {"name": "hierarchical_mlp", "hidden": [16]}}
make_ladder_encoder.conformance = {  # type: ignore[attr-defined]
    "partners": {**LADDER_PARTNERS, "prior": {"name": "ladder"}},
    "options": {"hidden": [16]},
}
make_ladder_prior.conformance = {"partners": {**LADDER_PARTNERS, "encoder": {"name": "ladder_mlp", "hidden": [16]}}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """The ladder VAE's encoder and prior."""
    register("encoder", "ladder_mlp", make_ladder_encoder)
    register("prior", "ladder", make_ladder_prior)
