"""Latents on curved spaces: the hyperspherical VAE (Davidson et al. 2018) and the Poincaré VAE
(Mathieu et al. 2019).

- `vmf_mlp` + `spherical_uniform` (variant `svae`): q(z | x) a von Mises-Fisher distribution on
  the unit sphere S^(d-1) of R^d, p(z) the uniform distribution on it; densities and their KL in
  closed form are TFP's (JAX substrate). Samples are drawn as Davidson et al. draw them: the
  component w along the mean direction by Wood's (1994) rejection scheme, the rest uniformly on
  the orthogonal sphere, then a Householder reflection of e_1 onto the mean direction. TFP's own
  sampler loops until acceptance (lax.while_loop), which JAX cannot differentiate; here
  REJECTION_ROUNDS proposals are drawn at once and the first accepted is kept. The gradient of w
  in kappa is the implicit reparameterisation gradient (Figurnov et al. 2018),
  dw/dkappa = -(dF(w; kappa)/dkappa) / p(w; kappa), F the CDF of w, by Gauss-Legendre
  quadrature: exact where the gradient through the accepted proposal alone (Davidson et al.'s
  g_rep without its correction term) is 30% low at kappa = 2 on S^2.
- `wrapped_normal_mlp` + `wrapped_normal` (variant `poincare_vae`): the Poincaré ball of
  curvature -c, z = exp_mu(v / lambda_mu) for v ~ N(0, diag sigma^2) in the tangent space at the
  origin, carried to mu by parallel transport (the paper's v, in coordinates where the
  metric is Euclidean, so z lies at geodesic distance |v| from mu). Its log-density against the ball's Riemannian
  volume is log N(lambda_mu log_mu(z); 0, sigma^2) + (d - 1) log(sqrt(c) r / sinh(sqrt(c) r)),
  r the distance from mu to z (Mathieu et al., eq. 6). The prior is the same distribution at the
  origin with unit scale; the KL is the core's one-sample estimate. The decoder reads z's
  coordinates (the paper's first decoder layer, a gyroplane layer, is left out).

Both densities are against the manifold's own measure, not Lebesgue measure on R^d: the latent
kinds ("hyperspherical", "hyperbolic") keep them from being paired with a Euclidean prior, and
the importance-sampled likelihood stays valid, since proposal and prior share the measure.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tensorflow_probability.substrates import jax as tfp

import zoo
from zoo import Above
from vae_zoo_plugins.layers.dense import MLP, check_sizes, dense, flatten_with, size

tfd = tfp.distributions
REJECTION_ROUNDS = 32  # proposals per sample; Wood's scheme accepts more than half of them for any kappa and d
MIN_CONCENTRATION = 1.0  # softplus(.) + 1: very flat vMFs make Wood's sampler slow and the KL's gradient noisy
BALL_MARGIN = 1e-5  # points are kept this far inside the ball's boundary, where lambda diverges


# --- The hypersphere ------------------------------------------------------------------------------


class VonMisesFisher(distrax.Distribution):
    """q(z | x) on S^(d-1): TFP's von Mises-Fisher, with the zoo's mean (the mean direction)."""

    def __init__(self, direction: jax.Array, concentration: jax.Array):
        self.direction, self.concentration = direction, concentration
        self.tfd = tfd.VonMisesFisher(mean_direction=direction, concentration=concentration)

    @property
    def event_shape(self):
        return self.direction.shape[-1:]

    @property
    def batch_shape(self):
        return self.direction.shape[:-1]

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        return sample_vmf(key, self.direction, self.concentration, n)

    def log_prob(self, value: jax.Array) -> jax.Array:
        return self.tfd.log_prob(value)

    def mean(self) -> jax.Array:
        """The mean direction, on the sphere (E[z] lies inside it): what reconstructions decode."""
        return self.direction

    def mode(self) -> jax.Array:
        return self.direction

    def kl_divergence(self, other_dist, **kwargs) -> jax.Array:
        """Closed form against the uniform distribution on the sphere; none against anything else."""
        if isinstance(other_dist, SphericalUniform):
            return tfd.kl_divergence(self.tfd, other_dist.tfd)
        raise NotImplementedError("a von Mises-Fisher posterior has a closed-form KL only to the spherical uniform")


class SphericalUniform(distrax.Distribution):
    """p(z): the uniform distribution on S^(d-1), batch (B,)."""

    def __init__(self, dimension: int, batch_size: int):
        self.dimension, self.batch_size = dimension, batch_size
        self.tfd = tfd.SphericalUniform(dimension=dimension, batch_shape=(batch_size,))

    @property
    def event_shape(self):
        return (self.dimension,)

    @property
    def batch_shape(self):
        return (self.batch_size,)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        return self.tfd.sample(n, seed=key)

    def log_prob(self, value: jax.Array) -> jax.Array:
        return self.tfd.log_prob(value)

    def mean(self) -> jax.Array:
        return jnp.zeros(self.batch_shape + self.event_shape)


def sample_wood(key: jax.Array, concentration: jax.Array, dimension: int, shape: tuple) -> jax.Array:
    """w = mu . z for z ~ vMF(mu, kappa) on S^(m-1), by Wood's rejection scheme: `shape` + kappa's
    shape draws, differentiable in kappa through the accepted proposal."""
    m1 = dimension - 1.0
    kappa = jnp.broadcast_to(concentration, shape + jnp.shape(concentration))
    b = m1 / (2.0 * kappa + jnp.sqrt(4.0 * jnp.square(kappa) + m1**2))  # = (-2k + sqrt(4k^2 + (m-1)^2)) / (m-1), stably
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + m1 * jnp.log(1.0 - jnp.square(x0))
    beta_key, uniform_key = jax.random.split(key)
    rounds = (REJECTION_ROUNDS,) + kappa.shape
    eps = jax.random.beta(beta_key, m1 / 2.0, m1 / 2.0, rounds, kappa.dtype)
    w = (1.0 - (1.0 + b) * eps) / (1.0 - (1.0 - b) * eps)
    accept = kappa * w + m1 * jnp.log(1.0 - x0 * w) - c >= jnp.log(jax.random.uniform(uniform_key, rounds, kappa.dtype))
    first = jnp.argmax(accept, axis=0)  # the first accepted round (round 0 in the negligible case of none)
    w = jax.lax.stop_gradient(jnp.take_along_axis(w, first[None], axis=0)[0])
    return with_implicit_gradient(w, kappa, dimension)


# numpy, not jax, at import: a JAX array here would start the XLA backend before
# `zoo train --distributed` can call jax.distributed.initialize.
QUADRATURE_NODES, QUADRATURE_WEIGHTS = (a.astype(np.float32) for a in np.polynomial.legendre.leggauss(64))


def log_bessel_ratio(order: float, kappa: jax.Array) -> jax.Array:
    """log(I_order(kappa) / I_(order-1)(kappa)), TFP's stable ratio."""
    return jnp.log(tfp.math.bessel_iv_ratio(order, kappa))


def dw_dkappa(w: jax.Array, kappa: jax.Array, dimension: int) -> jax.Array:
    """The implicit gradient dw/dkappa = int_w^1 (t - A(kappa)) p(t) dt / p(w), p(t) proportional to
    exp(kappa t) (1 - t^2)^((m-3)/2) and A = E[t] = I_(m/2) / I_(m/2-1) (so int_-1^1 (t - A) p = 0)."""
    mean = jnp.exp(log_bessel_ratio(dimension / 2.0, kappa))
    half = (1.0 - w) / 2.0
    t = w[..., None] + half[..., None] * (QUADRATURE_NODES + 1.0)  # nodes on [w, 1]
    exponent = (dimension - 3.0) / 2.0
    log_ratio = kappa[..., None] * (t - w[..., None])
    if exponent:
        log_ratio += exponent * (jnp.log1p(-jnp.square(t)) - jnp.log1p(-jnp.square(w))[..., None])
    ratio = jnp.exp(jnp.minimum(log_ratio, 80.0))  # p(t) / p(w), capped far in the tail (float32)
    return half * jnp.sum(QUADRATURE_WEIGHTS * (t - mean[..., None]) * ratio, axis=-1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def with_implicit_gradient(w: jax.Array, kappa: jax.Array, dimension: int) -> jax.Array:
    """w itself, whose derivative in kappa is the implicit reparameterisation gradient."""
    return w


@with_implicit_gradient.defjvp
def _with_implicit_gradient_jvp(dimension, primals, tangents):
    w, kappa = primals
    _, kappa_dot = tangents
    return w, dw_dkappa(w, kappa, dimension) * kappa_dot


def sample_vmf(key: jax.Array, direction: jax.Array, concentration: jax.Array, n: int) -> jax.Array:
    """n draws `(n, *batch, m)` of vMF(direction, concentration) (Davidson et al. 2018, Algorithm 1)."""
    m = direction.shape[-1]
    w_key, v_key = jax.random.split(key)
    w = sample_wood(w_key, concentration, m, (n,))[..., None]  # (n, *batch, 1)
    v = jax.random.normal(v_key, (n,) + direction.shape[:-1] + (m - 1,), direction.dtype)
    v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)  # uniform on the sphere orthogonal to e_1
    z = jnp.concatenate([w, jnp.sqrt(jnp.maximum(1.0 - jnp.square(w), 0.0)) * v], axis=-1)
    # The Householder reflection that takes e_1 to the mean direction.
    e1 = jnp.zeros(m, direction.dtype).at[0].set(1.0)
    u = e1 - direction
    u = u / jnp.maximum(jnp.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    return z - 2.0 * jnp.sum(u * z, axis=-1, keepdims=True) * u


def vmf_kl_to_uniform(concentration, dimension: int):
    """KL(vMF(mu, kappa) || uniform on S^(m-1)) in closed form, m = `dimension`, with numpy/scipy:
    kappa A_m(kappa) + log C_m(kappa) + log |S^(m-1)|, where A_m = I_(m/2) / I_(m/2-1),
    C_m(kappa) = kappa^(m/2-1) / ((2 pi)^(m/2) I_(m/2-1)(kappa)) and |S^(m-1)| = 2 pi^(m/2) / Gamma(m/2).
    (For tests: independent of TFP's implementation.)"""
    import numpy as np
    from scipy import special

    kappa, m = np.asarray(concentration, np.float64), dimension
    order = m / 2 - 1
    # ive(v, k) = iv(v, k) exp(-k): the logs of the Bessel functions without overflow.
    log_bessel = np.log(special.ive(order, kappa)) + kappa
    ratio = special.ive(m / 2, kappa) / special.ive(order, kappa)
    log_normaliser = order * np.log(kappa) - (m / 2) * np.log(2 * np.pi) - log_bessel
    log_area = np.log(2.0) + (m / 2) * np.log(np.pi) - special.gammaln(m / 2)
    return kappa * ratio + log_normaliser + log_area


class VonMisesFisherEncoder(nnx.Module):
    """x -> (mean direction, concentration) by dense layers: a vMF posterior on the sphere."""

    latent_kind = "hyperspherical"

    def __init__(self, x_shape, c_shape, latent_dim: int, hidden, activation: str, *, rngs: nnx.Rngs):
        inputs = size(x_shape) + size(c_shape)
        self.trunk = MLP(inputs, hidden, activation, rngs=rngs)
        last = hidden[-1] if hidden else inputs
        self.direction = dense(last, latent_dim, rngs=rngs)
        self.concentration = dense(last, 1, rngs=rngs)

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None) -> VonMisesFisher:
        h = self.trunk(flatten_with(x, c))
        raw = self.direction(h)
        direction = raw / jnp.maximum(jnp.linalg.norm(raw, axis=-1, keepdims=True), 1e-12)
        concentration = jax.nn.softplus(self.concentration(h)[..., 0]) + MIN_CONCENTRATION
        return VonMisesFisher(direction, concentration)


class SphericalUniformPrior(nnx.Module):
    """The uniform prior on the sphere S^(latent_dim - 1); no parameters, ignores c."""

    latent_kind = "hyperspherical"

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> SphericalUniform:
        return SphericalUniform(self.latent_dim, batch_size)


def require_sphere(latent_dim: int, what: str) -> None:
    if latent_dim < 2:
        raise ValueError(
            f"{what} needs latent_dim of at least 2 (a direction on the sphere S^(d-1) in R^d), got {latent_dim}"
        )


def make_vmf_encoder(
    x_shape, c_shape, latent_dim, rngs, hidden: Sequence[int] = (256, 256), activation: str = "relu"
) -> VonMisesFisherEncoder:
    """MLP encoder of a von Mises-Fisher posterior on the unit sphere of R^latent_dim (Davidson et al. 2018)."""
    require_sphere(latent_dim, "a von Mises-Fisher posterior")
    check_sizes("hidden", hidden, allow_empty=True)
    return VonMisesFisherEncoder(x_shape, c_shape, latent_dim, tuple(hidden), activation, rngs=rngs)


def make_spherical_uniform_prior(latent_dim) -> SphericalUniformPrior:
    """The uniform prior on the unit sphere of R^latent_dim."""
    require_sphere(latent_dim, "the spherical uniform prior")
    return SphericalUniformPrior(latent_dim)


# --- The Poincaré ball ------------------------------------------------------------------------------


def squared_norm(x: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(x), axis=-1, keepdims=True)


def conformal_factor(x: jax.Array, c: float) -> jax.Array:
    """lambda_x = 2 / (1 - c |x|^2), (..., 1)."""
    return 2.0 / jnp.maximum(1.0 - c * squared_norm(x), BALL_MARGIN)


def mobius_add(x: jax.Array, y: jax.Array, c: float) -> jax.Array:
    """x (+)_c y, the ball's Möbius addition."""
    xy = jnp.sum(x * y, axis=-1, keepdims=True)
    x2, y2 = squared_norm(x), squared_norm(y)
    numerator = (1.0 + 2.0 * c * xy + c * y2) * x + (1.0 - c * x2) * y
    return numerator / (1.0 + 2.0 * c * xy + c * c * x2 * y2)


def project_into_ball(x: jax.Array, c: float) -> jax.Array:
    """x pulled back inside the ball's radius 1/sqrt(c) by BALL_MARGIN where rounding pushed it out."""
    limit = (1.0 - BALL_MARGIN) / math.sqrt(c)
    norm = jnp.sqrt(jnp.maximum(squared_norm(x), 1e-30))
    return jnp.where(norm > limit, x * limit / norm, x)


def exp_map(mu: jax.Array, v: jax.Array, c: float) -> jax.Array:
    """exp_mu(v): the point reached from mu along the geodesic of initial velocity v."""
    sqrt_c = math.sqrt(c)
    norm = jnp.sqrt(jnp.maximum(squared_norm(v), 1e-30))
    step = jnp.tanh(sqrt_c * conformal_factor(mu, c) * norm / 2.0) * v / (sqrt_c * norm)
    return project_into_ball(mobius_add(mu, step, c), c)


def log_map(mu: jax.Array, z: jax.Array, c: float) -> jax.Array:
    """log_mu(z), the inverse of exp_mu: the tangent vector at mu pointing to z."""
    sqrt_c = math.sqrt(c)
    difference = mobius_add(-mu, z, c)
    norm = jnp.sqrt(jnp.maximum(squared_norm(difference), 1e-30))
    scale = 2.0 / (sqrt_c * conformal_factor(mu, c)) * jnp.arctanh(jnp.minimum(sqrt_c * norm, 1.0 - BALL_MARGIN))
    return scale * difference / norm


def distance(x: jax.Array, y: jax.Array, c: float) -> jax.Array:
    """The ball's geodesic distance, (...,)."""
    sqrt_c = math.sqrt(c)
    norm = jnp.sqrt(jnp.maximum(squared_norm(mobius_add(-x, y, c)), 1e-30))[..., 0]
    return 2.0 / sqrt_c * jnp.arctanh(jnp.minimum(sqrt_c * norm, 1.0 - BALL_MARGIN))


class WrappedNormal(distrax.Distribution):
    """The wrapped normal on the Poincaré ball of curvature -c: z = exp_mu(v / lambda_mu), v ~ N(0, diag scale^2)."""

    def __init__(self, loc: jax.Array, scale: jax.Array, curvature: float):
        self.loc, self.scale, self.curvature = loc, scale, curvature

    @property
    def event_shape(self):
        return self.loc.shape[-1:]

    @property
    def batch_shape(self):
        return self.loc.shape[:-1]

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        # v in the coordinates where the metric at mu is Euclidean: the tangent vector v / lambda_mu
        # has Riemannian length |v|, so z lies at geodesic distance |v| from mu.
        v = self.scale * jax.random.normal(key, (n,) + self.loc.shape, self.loc.dtype)
        return exp_map(self.loc, v / conformal_factor(self.loc, self.curvature), self.curvature)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Against the ball's Riemannian volume (Mathieu et al. 2019, eq. 6)."""
        c, d = self.curvature, self.loc.shape[-1]
        v = conformal_factor(self.loc, c) * log_map(self.loc, value, c)  # the sampling's v
        gaussian = distrax.MultivariateNormalDiag(jnp.zeros_like(self.loc), self.scale).log_prob(v)
        r = math.sqrt(c) * distance(self.loc, value, c)
        # log(r / sinh r), written to stay finite (and 0) as r -> 0.
        log_ratio = jnp.log(jnp.where(r > 1e-4, r, 1.0) / jnp.sinh(jnp.where(r > 1e-4, r, 1.0)))
        log_ratio = jnp.where(r > 1e-4, log_ratio, -jnp.square(r) / 6.0)
        return gaussian + (d - 1) * log_ratio

    def mean(self) -> jax.Array:
        """The location mu (the Fréchet mean), what reconstructions decode."""
        return self.loc

    def mode(self) -> jax.Array:
        return self.loc


class WrappedNormalEncoder(nnx.Module):
    """x -> (mu in the ball, tangent scale) by dense layers: mu = exp_0(u) of an unconstrained u."""

    latent_kind = "hyperbolic"

    def __init__(self, x_shape, c_shape, latent_dim: int, hidden, activation: str, curvature: float, *, rngs):
        inputs = size(x_shape) + size(c_shape)
        self.trunk = MLP(inputs, hidden, activation, rngs=rngs)
        last = hidden[-1] if hidden else inputs
        self.loc = dense(last, latent_dim, rngs=rngs)
        self.log_scale = dense(last, latent_dim, rngs=rngs)
        self.curvature = curvature

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None) -> WrappedNormal:
        h = self.trunk(flatten_with(x, c))
        u = self.loc(h)
        loc = exp_map(jnp.zeros_like(u), u, self.curvature)
        return WrappedNormal(loc, jax.nn.softplus(self.log_scale(h)) + 1e-4, self.curvature)


class WrappedNormalPrior(nnx.Module):
    """The wrapped normal at the ball's origin with unit scale (N(0, I) carried onto the ball)."""

    latent_kind = "hyperbolic"

    def __init__(self, latent_dim: int, curvature: float):
        self.latent_dim, self.curvature = latent_dim, curvature

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> WrappedNormal:
        shape = (batch_size, self.latent_dim)
        return WrappedNormal(jnp.zeros(shape), jnp.ones(shape), self.curvature)


def make_wrapped_normal_encoder(
    x_shape,
    c_shape,
    latent_dim,
    rngs,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    curvature: Annotated[float, Above(0)] = 1.0,
) -> WrappedNormalEncoder:
    """MLP encoder of a wrapped normal posterior on the Poincaré ball of curvature -`curvature`."""
    check_sizes("hidden", hidden, allow_empty=True)
    return WrappedNormalEncoder(x_shape, c_shape, latent_dim, tuple(hidden), activation, curvature, rngs=rngs)


def make_wrapped_normal_prior(latent_dim, curvature: Annotated[float, Above(0)] = 1.0) -> WrappedNormalPrior:
    """The wrapped normal prior at the origin of the Poincaré ball of curvature -`curvature`."""
    return WrappedNormalPrior(latent_dim, curvature)


# The conformance suite (zoo.testing) checks each with the partner of its own geometry.
make_vmf_encoder.conformance = {"partners": {"prior": {"name": "spherical_uniform"}}}  # type: ignore[attr-defined]
make_spherical_uniform_prior.conformance = {"partners": {"encoder": {"name": "vmf_mlp", "hidden": [16]}}}  # type: ignore[attr-defined]
make_wrapped_normal_encoder.conformance = {"partners": {"prior": {"name": "wrapped_normal"}}}  # type: ignore[attr-defined]
make_wrapped_normal_prior.conformance = {"partners": {"encoder": {"name": "wrapped_normal_mlp", "hidden": [16]}}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """Latents on the hypersphere and on the Poincaré ball."""
    register("encoder", "vmf_mlp", make_vmf_encoder)
    register("prior", "spherical_uniform", make_spherical_uniform_prior)
    register("encoder", "wrapped_normal_mlp", make_wrapped_normal_encoder)
    register("prior", "wrapped_normal", make_wrapped_normal_prior)
