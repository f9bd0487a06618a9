"""Normalising-flow posteriors: inverse autoregressive flow (Kingma et al. 2016) and planar
flow (Rezende and Mohamed 2015) on the Gaussian encoder's sample.

q(z | x) = distrax.Transformed(N(mu(x), diag sigma(x)^2), f_T o ... o f_1). Sampling and its log
density run the bijectors forward only (`sample_and_log_prob`), so the ELBO's KL is the core's
one-sample estimate (a flow has no closed-form KL) and importance sampling scores z with the
density of the same pass. Each bijector also has an inverse (IAF: D autoregressive passes;
planar: bisection on w.z), so `log_prob` works at any z too.
"""

from __future__ import annotations

from typing import Annotated, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import zoo
from zoo import AtLeast
from vae_zoo_plugins.layers.dense import (
    ACTIVATIONS,
    MLP,
    DiagonalGaussianHead,
    activation_fn,
    check_sizes,
    dense,
    flatten_with,
    size,
)

# The IAF's gate sigmoid(s + FORGET_BIAS) starts near 1, each step near the identity (Kingma et al., sec. 4).
FORGET_BIAS = 1.0
BISECTION_STEPS = 60


class FlowPosterior(distrax.Transformed):
    """A Gaussian base pushed through a flow; distrax.Transformed with the zoo's mean and KL."""

    def kl_divergence(self, other_dist, **kwargs):
        """No closed form: raising makes the model take the one-sample estimate log q(z) - log p(z)."""
        raise NotImplementedError("a flow posterior has no closed-form KL")

    def mean(self) -> jax.Array:
        """The flow's image of the base mean: not E[z] but the posterior's centre for
        reconstructions and active units (as a hierarchy's ancestral mean)."""
        return self.bijector.forward(self.distribution.mean())

    def mode(self) -> jax.Array:
        """The flow's image of the base mean (see `mean`)."""
        return self.mean()


# --- Inverse autoregressive flow ----------------------------------------------------------------


def hidden_degrees(width: int, latent_dim: int) -> tuple[int, ...]:
    """MADE degrees of a hidden layer, cycling through 1 .. D-1 (all 0 for D = 1: context only)."""
    if latent_dim == 1:
        return (0,) * width
    return tuple(k % (latent_dim - 1) + 1 for k in range(width))


class MaskedDense(nnx.Module):
    """A dense layer whose unit j sees unit i below only if degree_out[j] >= degree_in[i]
    (> with `strict`, for the outputs): Germain et al.'s MADE masks."""

    def __init__(self, in_degrees: Sequence[int], out_degrees: Sequence[int], *, strict: bool, rngs: nnx.Rngs):
        self.in_degrees, self.out_degrees, self.strict = tuple(in_degrees), tuple(out_degrees), strict
        self.kernel = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (len(in_degrees), len(out_degrees))))
        self.bias = nnx.Param(jnp.zeros((len(out_degrees),)))

    def mask(self) -> np.ndarray:
        below, above = np.array(self.in_degrees)[:, None], np.array(self.out_degrees)[None, :]
        return (above > below if self.strict else above >= below).astype(np.float32)

    def __call__(self, h: jax.Array) -> jax.Array:
        return h @ (self.kernel[...] * self.mask()) + self.bias[...]


class MADE(nnx.Module):
    """z (..., B, D) and context (B, H) -> two outputs per unit (the IAF's shift m and gate logit s,
    a MAF's shift and log-scale), each unit d a function of z's units of lower degree in `order`
    only; the context joins the first hidden layer (none with `context_dim` 0)."""

    def __init__(
        self,
        latent_dim: int,
        context_dim: int,
        hidden: Sequence[int],
        order: Sequence[int],
        activation: str,
        *,
        rngs: nnx.Rngs,
    ):
        degrees = [tuple(order)] + [hidden_degrees(width, latent_dim) for width in hidden]
        self.layers = nnx.List([MaskedDense(a, b, strict=False, rngs=rngs) for a, b in zip(degrees[:-1], degrees[1:])])
        self.context = dense(context_dim, hidden[0], rngs=rngs, use_bias=False) if context_dim else None
        self.shift = MaskedDense(degrees[-1], order, strict=True, rngs=rngs)
        self.gate = MaskedDense(degrees[-1], order, strict=True, rngs=rngs)
        self.activation = activation

    def __call__(self, z: jax.Array, context: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
        act = ACTIVATIONS[self.activation]
        h = self.layers[0](z)
        if self.context is not None:
            h = h + self.context(context)
        h = act(h)
        for index in range(1, len(self.layers)):
            h = act(self.layers[index](h))
        return self.shift(h), self.gate(h)


class InverseAutoregressiveStep(distrax.Bijector):
    """z -> sigma * z + (1 - sigma) * m, sigma = sigmoid(s), [m, s] = MADE(z, context):
    Kingma et al.'s numerically stable IAF step; log|det J| = sum log sigma (J is triangular)."""

    def __init__(self, made: MADE, context: jax.Array):
        super().__init__(event_ndims_in=1)
        self.made, self.context = made, context

    def shift_and_gate_logit(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        shift, gate_output = self.made(z, self.context)
        return shift, gate_output + FORGET_BIAS

    def forward_and_log_det(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        shift, gate_logit = self.shift_and_gate_logit(z)
        gate = jax.nn.sigmoid(gate_logit)
        return gate * z + (1.0 - gate) * shift, jnp.sum(jax.nn.log_sigmoid(gate_logit), axis=-1)

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """D passes: after pass k the units of degree <= k are exact (each sees only lower degrees)."""

        def solve(_, z):
            shift, gate_logit = self.shift_and_gate_logit(z)
            gate = jax.nn.sigmoid(gate_logit)
            return (y - (1.0 - gate) * shift) / gate

        z = jax.lax.fori_loop(0, y.shape[-1], solve, y)
        _, gate_logit = self.shift_and_gate_logit(z)
        return z, -jnp.sum(jax.nn.log_sigmoid(gate_logit), axis=-1)


class InverseAutoregressiveFlow(nnx.Module):
    """`steps` IAF steps, the autoregressive order reversed between steps (Kingma et al.)."""

    def __init__(
        self, latent_dim: int, context_dim: int, steps: int, hidden: Sequence[int], activation: str, *, rngs: nnx.Rngs
    ):
        forward, backward = tuple(range(1, latent_dim + 1)), tuple(range(latent_dim, 0, -1))
        self.steps = nnx.List(
            [
                MADE(latent_dim, context_dim, hidden, forward if t % 2 == 0 else backward, activation, rngs=rngs)
                for t in range(steps)
            ]
        )

    def bijectors(self, features: jax.Array) -> list[distrax.Bijector]:
        return [InverseAutoregressiveStep(made, features) for made in self.steps]


# --- Planar flow --------------------------------------------------------------------------------


class PlanarStep(distrax.Bijector):
    """z -> z + u_hat tanh(w.z + b), with u_hat = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a),
    so that w.u_hat > -1 and the map is invertible (Rezende and Mohamed, appendix A).
    Parameters per example: u, w (B, D), b (B,)."""

    def __init__(self, u: jax.Array, w: jax.Array, b: jax.Array):
        super().__init__(event_ndims_in=1)
        w_dot_u = jnp.sum(w * u, axis=-1, keepdims=True)
        self.u = u + (jax.nn.softplus(w_dot_u) - 1.0 - w_dot_u) * w / jnp.sum(w * w, axis=-1, keepdims=True)
        self.w, self.b = w, b

    def forward_and_log_det(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(jnp.sum(self.w * z, axis=-1) + self.b)
        slope = 1.0 + (1.0 - h**2) * jnp.sum(self.w * self.u, axis=-1)  # 1 + u_hat . psi(z)
        return z + self.u * h[..., None], jnp.log(jnp.abs(slope))

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """a = w.z solves a + c tanh(a + b) = w.y with c = w.u_hat > -1 (increasing in a), by bisection
        on [w.y - |c|, w.y + |c|]; then z = y - u_hat tanh(a + b)."""
        target, c = jnp.sum(self.w * y, axis=-1), jnp.sum(self.w * self.u, axis=-1)
        low, high = target - jnp.abs(c), target + jnp.abs(c)

        def halve(_, bounds):
            low, high = bounds
            middle = 0.5 * (low + high)
            above = middle + c * jnp.tanh(middle + self.b) > target
            return jnp.where(above, low, middle), jnp.where(above, middle, high)

        low, high = jax.lax.fori_loop(0, BISECTION_STEPS, halve, (low, high))
        # One Newton step from the bisection's root, which it leaves (nearly) in place: its
        # derivatives are the implicit function's, so log_prob's gradient in z is right (the
        # bisection's own comparisons carry none).
        root = jax.lax.stop_gradient(0.5 * (low + high))
        h_root = jnp.tanh(root + self.b)
        a = root - (root + c * h_root - target) / (1.0 + c * (1.0 - h_root**2))
        h = jnp.tanh(a + self.b)
        return y - self.u * h[..., None], -jnp.log(jnp.abs(1.0 + (1.0 - h**2) * c))


class PlanarFlow(nnx.Module):
    """`steps` planar steps whose u, w, b the encoder computes per example (amortised, as in the paper)."""

    def __init__(self, latent_dim: int, features: int, steps: int, *, rngs: nnx.Rngs):
        self.latent_dim, self.num_steps = latent_dim, steps
        self.parameters = dense(features, steps * (2 * latent_dim + 1), rngs=rngs)

    def bijectors(self, features: jax.Array) -> list[distrax.Bijector]:
        d = self.latent_dim
        per_step = self.parameters(features).reshape(features.shape[:-1] + (self.num_steps, 2 * d + 1))
        return [
            PlanarStep(per_step[..., t, :d], per_step[..., t, d : 2 * d], per_step[..., t, 2 * d])
            for t in range(self.num_steps)
        ]


# --- The encoder --------------------------------------------------------------------------------


class FlowEncoder(nnx.Module):
    """q(z | x, c): an MLP, a diagonal Gaussian, then a flow whose parameters come from the same features."""

    def __init__(self, trunk: MLP, head: DiagonalGaussianHead, flow):
        self.trunk, self.head, self.flow = trunk, head, flow

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None) -> FlowPosterior:
        features = self.trunk(flatten_with(x, c))
        bijectors = self.flow.bijectors(features)
        return FlowPosterior(self.head(features), distrax.Chain(bijectors[::-1]))  # Chain applies the last first


def check_steps(steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps: expected at least 1 flow step, got {steps}")


def _trunk(x_shape, c_shape, latent_dim, hidden, activation, log_variance_bounds, rngs, gated=False, init="lecun"):
    check_sizes("hidden", hidden, allow_empty=False)
    activation_fn(activation)
    trunk = MLP(size(x_shape) + size(c_shape), tuple(hidden), activation, rngs=rngs, gated=gated, init=init)
    return trunk, DiagonalGaussianHead(hidden[-1], latent_dim, rngs=rngs, log_variance_bounds=log_variance_bounds)


def make_iaf_encoder(
    x_shape,
    c_shape,
    latent_dim,
    rngs,
    hidden: Sequence[int] = (512, 512),
    activation: str = "relu",
    steps: Annotated[int, AtLeast(1)] = 2,
    made_hidden: Sequence[int] = (256, 256),
    log_variance_bounds: Optional[Sequence[float]] = None,
    gated: bool = False,
    init: str = "lecun",
) -> FlowEncoder:
    """Gaussian MLP encoder followed by `steps` inverse autoregressive flow steps (Kingma et al. 2016).

    Each step is a MADE of `made_hidden` units over z, with the encoder's last hidden layer as
    context; the order of z's units alternates between steps. `gated` and `init` shape the
    trunk as for the `mlp` encoder (the VampPrior paper's gated layers).

    >>> enc = make_iaf_encoder((8, 8, 1), None, 4, nnx.Rngs(0), hidden=(32,), steps=2, made_hidden=(16,))  # doctest: +SKIP
    """
    check_steps(steps)
    check_sizes("made_hidden", made_hidden, allow_empty=False)
    trunk, head = _trunk(x_shape, c_shape, latent_dim, hidden, activation, log_variance_bounds, rngs, gated, init)
    return FlowEncoder(
        trunk, head, InverseAutoregressiveFlow(latent_dim, hidden[-1], steps, tuple(made_hidden), activation, rngs=rngs)
    )


def make_planar_encoder(
    x_shape,
    c_shape,
    latent_dim,
    rngs,
    hidden: Sequence[int] = (512, 512),
    activation: str = "relu",
    steps: Annotated[int, AtLeast(1)] = 4,
    log_variance_bounds: Optional[Sequence[float]] = None,
    gated: bool = False,
    init: str = "lecun",
) -> FlowEncoder:
    """Gaussian MLP encoder followed by `steps` planar flow steps (Rezende and Mohamed 2015), amortised.

    >>> enc = make_planar_encoder((8, 8, 1), None, 4, nnx.Rngs(0), hidden=(32,), steps=4)  # doctest: +SKIP
    """
    check_steps(steps)
    trunk, head = _trunk(x_shape, c_shape, latent_dim, hidden, activation, log_variance_bounds, rngs, gated, init)
    return FlowEncoder(trunk, head, PlanarFlow(latent_dim, hidden[-1], steps, rngs=rngs))


@zoo.hookimpl
def register_components(register):
    """Flow posteriors: IAF and planar."""
    register("encoder", "iaf_mlp", make_iaf_encoder)
    register("encoder", "planar_mlp", make_planar_encoder)
