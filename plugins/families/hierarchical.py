"""Components of a hierarchy of stochastic layers (the two-level HVAE of Tomczak and Welling 2018).

With `latent_dim: [40, 40]` a recipe has layers z_1 (bottom) and z_2 (top):

- encoder `hierarchical_mlp`: q(z_L | x) prod_l q(z_l | x, z_{l+1})
- prior `hierarchical`: p(z_L) prod_l p(z_l | z_{l+1}), p(z_L) standard normal or a VampPrior
- decoder `hierarchical_mlp`: p(x | z_1, ..., z_L), a branch per layer joined

Each returns a `zoo.core.hierarchy.LayeredLatent` (or takes its concatenated z),
so training, KL by Monte Carlo and importance sampling are the core's own.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo.core.hierarchy import LayeredLatent, split_layers
from vae_zoo_plugins.layers.dense import MLP, DiagonalGaussianHead, check_sizes, dense, flatten_with, size
from vae_zoo_plugins.families.mixture_priors import PseudoInputs, Spread, VampPrior, check_vampprior
from vae_zoo_plugins.base.priors import StandardNormalPrior


class Network:
    """The settings every network of a hierarchy shares."""

    def __init__(
        self,
        hidden: Sequence[int],
        activation: str,
        gated: bool,
        init: str,
        log_variance_bounds: Optional[Sequence[float]],
    ):
        check_sizes("hidden", hidden, allow_empty=False)
        self.hidden, self.activation, self.gated, self.init = tuple(hidden), activation, gated, init
        self.log_variance_bounds = log_variance_bounds

    def mlp(self, in_features: int, hidden: Sequence[int], rngs: nnx.Rngs) -> MLP:
        return MLP(in_features, hidden, self.activation, rngs=rngs, gated=self.gated, init=self.init)

    def head(self, in_features: int, latent: int, rngs: nnx.Rngs) -> DiagonalGaussianHead:
        return DiagonalGaussianHead(
            in_features, latent, rngs=rngs, init=self.init, log_variance_bounds=self.log_variance_bounds
        )


def broadcast_join(features: jax.Array, below: jax.Array) -> jax.Array:
    """Concatenate per-example features (B, H) with features (..., B, H') of sampled z."""
    return jnp.concatenate([jnp.broadcast_to(features, below.shape[:-1] + features.shape[-1:]), below], axis=-1)


class LowerPosterior(nnx.Module):
    """q(z_l | x, z_{l+1}): an x branch and a z branch, joined, then a Gaussian head."""

    def __init__(self, in_x: int, size_above: int, size: int, net: Network, *, rngs: nnx.Rngs):
        self.x_branch = net.mlp(in_x, net.hidden[:1], rngs)
        self.z_branch = net.mlp(size_above, net.hidden[:1], rngs)
        self.joint = net.mlp(2 * net.hidden[0], net.hidden[1:], rngs)
        self.head = net.head(net.hidden[-1] if len(net.hidden) > 1 else 2 * net.hidden[0], size, rngs)

    def __call__(self, x_features: jax.Array, z_above: jax.Array) -> distrax.Distribution:
        return self.head(self.joint(broadcast_join(x_features, self.z_branch(z_above))))


class HierarchicalEncoder(nnx.Module):
    """q(z_L | x, c) prod_l q(z_l | x, z_{l+1}, c) as one distribution over [z_1, ..., z_L]."""

    def __init__(self, x_shape, c_shape, latent_sizes, net: Network, *, rngs: nnx.Rngs):
        self.sizes = tuple(latent_sizes)
        in_x = size(x_shape) + size(c_shape)
        self.top_trunk = net.mlp(in_x, net.hidden, rngs)
        self.top_head = net.head(net.hidden[-1], self.sizes[-1], rngs)
        self.lower = nnx.List(
            [LowerPosterior(in_x, self.sizes[i + 1], self.sizes[i], net, rngs=rngs) for i in range(len(self.sizes) - 1)]
        )

    def top_posterior(self, x: jax.Array, c: Optional[jax.Array] = None) -> distrax.Distribution:
        """q(z_L | x, c), the top layer alone (what a VampPrior on the top layer mixes)."""
        return self.top_head(self.top_trunk(flatten_with(x, c)))

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None) -> LayeredLatent:
        inputs = flatten_with(x, c)
        conditionals = []
        for layer in self.lower:
            x_features = layer.x_branch(inputs)  # once per batch, shared by every sample of z above
            conditionals.append(lambda z_above, layer=layer, h=x_features: layer(h, z_above))
        return LayeredLatent(self.sizes, self.top_posterior(x, c), conditionals)


class LowerPrior(nnx.Module):
    """p(z_l | z_{l+1}): dense layers and a Gaussian head."""

    def __init__(self, size_above: int, size: int, net: Network, *, rngs: nnx.Rngs):
        self.trunk = net.mlp(size_above, net.hidden, rngs)
        self.head = net.head(net.hidden[-1], size, rngs)

    def __call__(self, z_above: jax.Array) -> distrax.Distribution:
        return self.head(self.trunk(z_above))


def lower_priors(latent_sizes: Sequence[int], net: Network, rngs: nnx.Rngs) -> nnx.List:
    """p(z_l | z_{l+1}) for l = 1 .. L-1, bottom first."""
    return nnx.List(
        [LowerPrior(latent_sizes[i + 1], latent_sizes[i], net, rngs=rngs) for i in range(len(latent_sizes) - 1)]
    )


class HierarchicalPrior(nnx.Module):
    """p(z_L) prod_l p(z_l | z_{l+1}) as one distribution over [z_1, ..., z_L].

    `lower` are the p(z_l | z_{l+1}) networks (`lower_priors`); a ladder VAE passes its
    encoder's top-down networks, shared with the posterior, not copied.
    """

    def __init__(self, latent_sizes, top, lower: nnx.List):
        self.sizes = tuple(latent_sizes)
        self.top = top
        self.lower = lower

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> LayeredLatent:
        return LayeredLatent(self.sizes, self.top(c, batch_size), list(self.lower))


class HierarchicalDecoder(nnx.Module):
    """p(x | z_1, ..., z_L, c): a branch per layer, joined (with c), dense layers, then the likelihood's parameters."""

    def __init__(self, latent_sizes, c_shape, output_shape, net: Network, *, rngs: nnx.Rngs):
        self.sizes = tuple(latent_sizes)
        self.output_shape = tuple(output_shape)
        self.branches = nnx.List([net.mlp(s, net.hidden[:1], rngs) for s in self.sizes])
        joined = len(self.sizes) * net.hidden[0] + size(c_shape)
        self.joint = net.mlp(joined, net.hidden[1:], rngs)
        self.out = dense(
            net.hidden[-1] if len(net.hidden) > 1 else joined, math.prod(self.output_shape), net.init, rngs=rngs
        )

    def __call__(self, z: jax.Array, c: Optional[jax.Array] = None) -> jax.Array:
        features = [branch(layer) for branch, layer in zip(self.branches, split_layers(z, self.sizes))]
        joined = flatten_with(jnp.concatenate(features, axis=-1), c)
        return self.out(self.joint(joined)).reshape((z.shape[0],) + self.output_shape)


Init = Literal["lecun", "he"]


def make_hierarchical_encoder(
    x_shape,
    c_shape,
    latent_sizes,
    rngs,
    hidden: Sequence[int] = (300, 300),
    activation: str = "relu",
    gated: bool = False,
    init: Init = "lecun",
    log_variance_bounds: Optional[Sequence[float]] = None,
) -> HierarchicalEncoder:
    """q(z_L | x) prod q(z_l | x, z_{l+1}), the HVAE's posterior; needs `latent_dim` as a list.

    The top layer: dense layers `hidden`; each lower layer: an x branch and a
    z branch of width hidden[0], joined, then hidden[1:] (the paper's HVAE).

    >>> enc = make_hierarchical_encoder((28, 28, 1), None, (40, 40), nnx.Rngs(0), gated=True)  # doctest: +SKIP
    """
    return HierarchicalEncoder(
        x_shape, c_shape, latent_sizes, Network(hidden, activation, gated, init, log_variance_bounds), rngs=rngs
    )


def make_hierarchical_prior(
    latent_sizes,
    c_shape,
    encoder,
    x_shape,
    rngs,
    top: Literal["standard_normal", "vampprior"] = "standard_normal",
    hidden: Sequence[int] = (300, 300),
    activation: str = "relu",
    gated: bool = False,
    init: Init = "lecun",
    log_variance_bounds: Optional[Sequence[float]] = None,
    num_pseudo_inputs: PseudoInputs = 500,
    init_mean: float = 0.05,
    init_std: Spread = 0.01,
) -> HierarchicalPrior:
    """p(z_L) prod p(z_l | z_{l+1}); the top layer N(0, I) or a VampPrior through the encoder's top layer.

    >>> prior = make_hierarchical_prior((40, 40), None, encoder, (28, 28, 1), nnx.Rngs(0), top="vampprior")  # doctest: +SKIP
    """
    net = Network(hidden, activation, gated, init, log_variance_bounds)
    top_prior: nnx.Module
    if top == "standard_normal":
        top_prior = StandardNormalPrior(latent_sizes[-1])
    else:
        check_vampprior(c_shape, num_pseudo_inputs, init_std)
        if len(latent_sizes) > 1 and not hasattr(encoder, "top_posterior"):
            raise zoo.ModelBuildError(
                f"prior 'hierarchical' with top vampprior needs an encoder of the hierarchy (one with top_posterior, "
                f"such as hierarchical_mlp); the recipe's encoder is {type(encoder).__name__}"
            )
        top_prior = VampPrior(
            encoder,
            x_shape,
            num_pseudo_inputs,
            init_mean,
            init_std,
            rngs=rngs,
            level="top" if len(latent_sizes) > 1 else "whole",
        )
    return HierarchicalPrior(latent_sizes, top_prior, lower_priors(latent_sizes, net, rngs))


def make_hierarchical_decoder(
    latent_sizes,
    c_shape,
    output_shape,
    rngs,
    hidden: Sequence[int] = (300, 300),
    activation: str = "relu",
    gated: bool = False,
    init: Init = "lecun",
) -> HierarchicalDecoder:
    """p(x | z_1, ..., z_L): a branch of width hidden[0] per layer, joined, then hidden[1:].

    >>> dec = make_hierarchical_decoder((40, 40), None, (28, 28, 1, 1), nnx.Rngs(0), gated=True)  # doctest: +SKIP
    """
    return HierarchicalDecoder(
        latent_sizes, c_shape, output_shape, Network(hidden, activation, gated, init, None), rngs=rngs
    )


# The conformance suite (zoo.testing) checks each of them in a hierarchy of two layers, small networks.
for _factory in (make_hierarchical_encoder, make_hierarchical_prior, make_hierarchical_decoder):
    _factory.conformance = {"partners": {"latent_dim": [2, 2]}, "options": {"hidden": [16, 16]}}  # type: ignore[union-attr]


@zoo.hookimpl
def register_components(register):
    """The hierarchy's encoder, prior and decoder."""
    register("encoder", "hierarchical_mlp", make_hierarchical_encoder)
    register("prior", "hierarchical", make_hierarchical_prior)
    register("decoder", "hierarchical_mlp", make_hierarchical_decoder)
