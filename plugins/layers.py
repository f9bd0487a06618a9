"""Building blocks shared by the first-party networks."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "swish": jax.nn.swish,
}


def activation_fn(name: str):
    """The activation called `name`, or a ValueError listing the known ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


def check_sizes(option: str, sizes: Sequence[int], *, allow_empty: bool) -> None:
    """Refuse layer sizes that are not positive (and an empty list where layers are needed)."""
    if not sizes and not allow_empty:
        raise ValueError(f"{option} must list at least one size")
    if any(s < 1 for s in sizes):
        raise ValueError(f"{option} sizes must be positive, got {list(sizes)}")


def size(shape: Optional[Sequence[int]]) -> int:
    """Number of elements of one example of `shape` (0 for no condition)."""
    return 0 if shape is None else math.prod(shape)


def flatten_with(first: jax.Array, condition: Optional[jax.Array]) -> jax.Array:
    """Flatten each row of `first` and append the flattened condition, if any."""
    parts = [first.reshape((first.shape[0], -1))]
    if condition is not None:
        parts.append(condition.reshape((condition.shape[0], -1)))
    return jnp.concatenate(parts, axis=-1)


class MLP(nnx.Module):
    """Dense layers, each followed by the activation."""

    def __init__(self, in_features: int, hidden: Sequence[int], activation: str, *, rngs: nnx.Rngs):
        check_sizes("hidden", hidden, allow_empty=True)
        sizes = [in_features, *hidden]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.activation = activation
        activation_fn(activation)  # refuse an unknown name at build time

    def __call__(self, h: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers:
            h = act(layer(h))
        return h


class DiagonalGaussianHead(nnx.Module):
    """Features -> N(loc, diag(scale^2)) over z: the reparameterisable posterior of the sources."""

    def __init__(self, in_features: int, latent_dim: int, *, rngs: nnx.Rngs):
        self.loc = nnx.Linear(in_features, latent_dim, rngs=rngs)
        self.log_scale = nnx.Linear(in_features, latent_dim, rngs=rngs)

    def __call__(self, h: jax.Array) -> distrax.MultivariateNormalDiag:
        return distrax.MultivariateNormalDiag(self.loc(h), jnp.exp(self.log_scale(h)))
