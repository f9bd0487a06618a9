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


INITS = ("lecun", "he")


def dense(
    in_features: int, out_features: int, init: str = "lecun", *, rngs: nnx.Rngs, use_bias: bool = True
) -> nnx.Linear:
    """A dense layer. "lecun": flax's default (LeCun-normal kernel, zero bias); "he": He-normal
    kernel N(0, 2 / fan_in) and PyTorch's default bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    the initialisation of Tomczak and Welling's VampPrior code."""
    if init not in INITS:
        raise ValueError(f"init: unknown initialisation {init!r}; known: {', '.join(INITS)}")
    if init == "lecun":
        return nnx.Linear(in_features, out_features, use_bias=use_bias, rngs=rngs)
    bound = 1.0 / math.sqrt(in_features)
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        rngs=rngs,
        kernel_init=jax.nn.initializers.normal(math.sqrt(2.0 / in_features)),
        bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound),
    )


def linear_arrays(layer: nnx.Linear) -> tuple[jax.Array, jax.Array]:
    """A dense layer's (kernel, bias), a zero bias where it has none (zoo.core.interfaces.DenseNetwork's form)."""
    kernel = layer.kernel[...]
    bias = jnp.zeros(kernel.shape[1], kernel.dtype) if layer.bias is None else layer.bias[...]
    return kernel, bias


class GatedDense(nnx.Module):
    """h = (W x + b) * sigmoid(V x + c): the gated layer of Dauphin et al., used by the VampPrior paper."""

    def __init__(self, in_features: int, out_features: int, init: str = "lecun", *, rngs: nnx.Rngs):
        self.linear = dense(in_features, out_features, init, rngs=rngs)
        self.gate = dense(in_features, out_features, init, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        return self.linear(h) * jax.nn.sigmoid(self.gate(h))


class MLP(nnx.Module):
    """Dense layers, each followed by the activation; with `gated`, gated layers (no activation)."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        activation: str,
        *,
        rngs: nnx.Rngs,
        gated: bool = False,
        init: str = "lecun",
    ):
        check_sizes("hidden", hidden, allow_empty=True)
        sizes = [in_features, *hidden]
        self.layers: nnx.List
        if gated:
            self.layers = nnx.List([GatedDense(a, b, init, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        else:
            self.layers = nnx.List([dense(a, b, init, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.gated = gated
        self.activation = activation
        activation_fn(activation)  # refuse an unknown name at build time

    def dense_layers(self) -> list[tuple[jax.Array, jax.Array]]:
        """(kernel, bias) of each layer, input side first, for a zoo.core.interfaces.DenseNetwork."""
        if self.gated:
            raise NotImplementedError(
                "its layers are gated, (W h + b) * sigmoid(V h + c), not dense layers and an activation"
            )
        return [linear_arrays(layer) for layer in self.layers]

    def __call__(self, h: jax.Array) -> jax.Array:
        act = (lambda a: a) if self.gated else ACTIVATIONS[self.activation]
        for layer in self.layers:
            h = act(layer(h))
        return h


def check_log_variance_bounds(bounds: Optional[Sequence[float]]) -> Optional[tuple[float, float]]:
    """(low, high) with low < high, or None."""
    if bounds is None:
        return None
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"log_variance_bounds: expected [low, high] with low < high, got {list(bounds)}")
    return float(bounds[0]), float(bounds[1])


class DiagonalGaussianHead(nnx.Module):
    """Features -> N(loc, diag(scale^2)) over z: the reparameterisable posterior of the sources.

    With `log_variance_bounds` the log-variance is clipped to [low, high] (the
    VampPrior code's Hardtanh(-6, 2)), which keeps scales away from 0 and infinity.
    """

    def __init__(
        self,
        in_features: int,
        latent_dim: int,
        *,
        rngs: nnx.Rngs,
        init: str = "lecun",
        log_variance_bounds: Optional[Sequence[float]] = None,
    ):
        self.loc = dense(in_features, latent_dim, init, rngs=rngs)
        self.log_scale = dense(in_features, latent_dim, init, rngs=rngs)
        self.log_variance_bounds = check_log_variance_bounds(log_variance_bounds)

    def dense_heads(self) -> dict[str, tuple[jax.Array, jax.Array]]:
        """The `loc` and `log_scale` heads as (kernel, bias), for a zoo.core.interfaces.DenseNetwork."""
        if self.log_variance_bounds is not None:
            raise NotImplementedError("its log-variance is clipped, so log_scale is no linear head")
        return {"loc": linear_arrays(self.loc), "log_scale": linear_arrays(self.log_scale)}

    def __call__(self, h: jax.Array) -> distrax.MultivariateNormalDiag:
        log_scale = self.log_scale(h)
        if self.log_variance_bounds is not None:  # the layer outputs a log-variance, as in the paper
            low, high = self.log_variance_bounds
            log_scale = 0.5 * jnp.clip(log_scale, low, high)
        return distrax.MultivariateNormalDiag(self.loc(h), jnp.exp(log_scale))
