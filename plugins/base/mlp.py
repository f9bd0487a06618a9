"""Fully connected encoder and decoder (the networks of the seed VAE and CVAE)."""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import jax
from flax import nnx

import zoo
from vae_zoo_plugins.layers.dense import MLP, DiagonalGaussianHead, dense, flatten_with, linear_arrays, size


class MLPEncoder(nnx.Module):
    """q(z | x, c): flatten x, append c, dense layers, diagonal Gaussian."""

    def __init__(
        self,
        x_shape,
        c_shape,
        latent_dim,
        hidden,
        activation,
        *,
        rngs,
        gated=False,
        init="lecun",
        log_variance_bounds=None,
    ):
        self.trunk = MLP(size(x_shape) + size(c_shape), hidden, activation, rngs=rngs, gated=gated, init=init)
        self.head = DiagonalGaussianHead(
            hidden[-1] if hidden else size(x_shape) + size(c_shape),
            latent_dim,
            rngs=rngs,
            init=init,
            log_variance_bounds=log_variance_bounds,
        )

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None):
        return self.head(self.trunk(flatten_with(x, c)))


class MLPDecoder(nnx.Module):
    """(z, c) -> raw likelihood parameters of shape output_shape, through dense layers."""

    def __init__(self, latent_dim, c_shape, output_shape, hidden, activation, *, rngs, gated=False, init="lecun"):
        self.output_shape = tuple(output_shape)
        self.trunk = MLP(latent_dim + size(c_shape), hidden, activation, rngs=rngs, gated=gated, init=init)
        last = hidden[-1] if hidden else latent_dim + size(c_shape)
        self.out = dense(last, math.prod(self.output_shape), init, rngs=rngs)

    def __call__(self, z: jax.Array, c: Optional[jax.Array] = None) -> jax.Array:
        return self.out(self.trunk(flatten_with(z, c))).reshape((z.shape[0],) + self.output_shape)

    def dense_network(self) -> zoo.DenseNetwork:
        """Its layers as arrays, for `zoo export-web` (zoo.core.interfaces.DenseExportable)."""
        return zoo.DenseNetwork(self.trunk.dense_layers(), self.trunk.activation, {"out": linear_arrays(self.out)})


def make_mlp_encoder(
    x_shape,
    c_shape,
    latent_dim,
    rngs,
    hidden: Sequence[int] = (512, 512),
    activation: str = "relu",
    gated: bool = False,
    init: Literal["lecun", "he"] = "lecun",
    log_variance_bounds: Optional[Sequence[float]] = None,
) -> MLPEncoder:
    """MLP encoder q(z | x, c) with the given hidden sizes.

    `gated`: gated layers (W x + b) * sigmoid(V x + c) instead of activations;
    `init`: "lecun" (flax's default) or "he" (the VampPrior code's);
    `log_variance_bounds`: [low, high] clip of the posterior's log-variance.

    >>> enc = make_mlp_encoder((8, 8, 1), None, 4, nnx.Rngs(0), hidden=(32,), gated=True)  # doctest: +SKIP
    """
    return MLPEncoder(
        x_shape,
        c_shape,
        latent_dim,
        tuple(hidden),
        activation,
        rngs=rngs,
        gated=gated,
        init=init,
        log_variance_bounds=log_variance_bounds,
    )


def make_mlp_decoder(
    latent_dim,
    c_shape,
    output_shape,
    rngs,
    hidden: Sequence[int] = (512, 512),
    activation: str = "relu",
    gated: bool = False,
    init: Literal["lecun", "he"] = "lecun",
) -> MLPDecoder:
    """MLP decoder (z, c) -> likelihood parameters (`gated` and `init` as for the encoder).

    >>> dec = make_mlp_decoder(4, None, (8, 8, 1, 1), nnx.Rngs(0), hidden=(32,))  # doctest: +SKIP
    """
    return MLPDecoder(latent_dim, c_shape, output_shape, tuple(hidden), activation, rngs=rngs, gated=gated, init=init)


@zoo.hookimpl
def register_components(register):
    """MLP encoder and decoder."""
    register("encoder", "mlp", make_mlp_encoder)
    register("decoder", "mlp", make_mlp_decoder)
