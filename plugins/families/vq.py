"""The VQ-VAE (van den Oord et al. 2017): a discrete latent of codes from a learned codebook.

The encoder's output z_e (B, latent_dim) is cut into `latent_dim / code_dim` positions, each
replaced by its nearest of `codebook_size` code vectors. The posterior is a point mass on those
codes (`QuantisedPosterior`, latent kind "discrete"), its sample the straight-through estimate
z_e + stop_gradient(z_q - z_e): the decoder's gradient reaches the encoder unchanged. Two priors
over codes, each position independent: `uniform_codebook` (KL(q || p) = positions * log K, a
constant) and `fitted_codebook`, a categorical per position fitted after training to how often
the training split's posteriors choose each code (the paper fits a PixelCNN over the code grid;
this independent categorical is the simplest prior fitted to the codes, and the KL against it is
the codes' negative log-probability). Samples decode codes drawn from the prior. Objective `vq`: -log p(x | z_q) + |sg(z_e) - z_q|^2 + commitment |z_e - sg(z_q)|^2.

A point mass is no importance-sampling proposal, so the encoder declares the importance-sampled
log-likelihood undefined (`undefined_metrics`); evaluation reports it as None with the reason and
adds the codebook's perplexity.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo import AtLeast, Between, ParameterGroup
from vae_zoo_plugins.layers.dense import MLP, activation_fn, check_sizes, dense, flatten_with, size

UNDEFINED = (
    "not defined for a VQ-VAE: its posterior is a point mass on codes, no importance-sampling proposal, "
    "and its decoder was trained at the codes alone; the ELBO against its prior over codes is reported instead"
)


def nearest_codes(groups: jax.Array, codebook: jax.Array) -> jax.Array:
    """The index of the nearest code vector (Euclidean) for each group: (..., P, d), (K, d) -> (..., P)."""
    return jnp.argmin(jnp.sum(jnp.square(groups[..., None, :] - codebook), axis=-1), axis=-1)


def code_counts(codes: jax.Array, num_codes: int) -> jax.Array:
    """How often each code is chosen along the first axis of `codes`: (N,) -> (K,), or per
    position, (N, positions) -> (positions, K)."""
    return jnp.sum(jax.nn.one_hot(codes, num_codes), axis=0)


def perplexity_of_counts(counts: jax.Array) -> jax.Array:
    """exp(entropy) of the code frequencies `counts` (K,): K for equal use of K codes, 1 for one."""
    probabilities = counts / jnp.sum(counts)
    return jnp.exp(
        -jnp.sum(
            jnp.where(probabilities > 0, probabilities * jnp.log(jnp.where(probabilities > 0, probabilities, 1.0)), 0.0)
        )
    )


def code_perplexity(codes: jax.Array, num_codes: int) -> jax.Array:
    """exp(entropy) of how often each code is chosen in `codes`: K for equal use of K codes, 1 for one."""
    return perplexity_of_counts(code_counts(codes.reshape(-1), num_codes))


def is_close(a: jax.Array, b: jax.Array) -> jax.Array:
    """Elementwise equality up to float32 rounding of a sum (the straight-through estimator's)."""
    return jnp.abs(a - b) <= 1e-5 * (1.0 + jnp.abs(b))


class QuantisedPosterior(distrax.Distribution):
    """q(z | x): a point mass on the nearest codes of z_e, sampled with the straight-through gradient."""

    def __init__(self, z_e: jax.Array, codebook: jax.Array):
        self.z_e, self.codebook = z_e, codebook
        self.num_codes, code_dim = codebook.shape
        groups = z_e.reshape(z_e.shape[:-1] + (-1, code_dim))
        self.codes = nearest_codes(groups, codebook)  # (B, positions)
        self.quantised = codebook[self.codes].reshape(z_e.shape)
        self.straight_through = z_e + jax.lax.stop_gradient(self.quantised - z_e)

    @property
    def event_shape(self):
        return self.z_e.shape[-1:]

    @property
    def batch_shape(self):
        return self.z_e.shape[:-1]

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        return jnp.broadcast_to(self.straight_through, (n,) + self.straight_through.shape)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """0 at the chosen codes, -inf elsewhere (a point mass, against counting measure on codes).

        Equal up to float rounding: the straight-through sample z_e + (z_q - z_e) is z_q rounded."""
        return jnp.where(jnp.all(is_close(value, self.quantised), axis=-1), 0.0, -jnp.inf)

    def mean(self) -> jax.Array:
        """The chosen codes (with the straight-through gradient)."""
        return self.straight_through

    def mode(self) -> jax.Array:
        return self.straight_through

    def kl_divergence(self, other_dist, **kwargs) -> jax.Array:
        """KL(point mass || p) = -log p(codes), for a prior over codes (`code_log_prob`)."""
        if not hasattr(other_dist, "code_log_prob"):
            raise NotImplementedError("a quantised posterior has a KL only against a prior over codes")
        return -other_dist.code_log_prob(self.codes)

    def codebook_loss(self) -> jax.Array:
        """|sg(z_e) - z_q|^2 per example: moves the chosen codes towards the encoder's outputs."""
        return jnp.sum(jnp.square(jax.lax.stop_gradient(self.z_e) - self.quantised), axis=-1)

    def commitment_loss(self) -> jax.Array:
        """|z_e - sg(z_q)|^2 per example: keeps the encoder's outputs near their codes."""
        return jnp.sum(jnp.square(self.z_e - jax.lax.stop_gradient(self.quantised)), axis=-1)


class CodePrior(distrax.Distribution):
    """p(z): every position's code drawn from its own categorical over the codebook, independently;
    batch (B,). `log_probs` (positions, K) holds each position's log-probabilities."""

    def __init__(self, codebook: jax.Array, log_probs: jax.Array, batch_size: int):
        self.codebook, self.log_probs, self.batch_size = codebook, log_probs, batch_size
        self.num_codes, self.code_dim = codebook.shape
        self.positions = log_probs.shape[0]

    @property
    def event_shape(self):
        return (self.positions * self.code_dim,)

    @property
    def batch_shape(self):
        return (self.batch_size,)

    def code_log_prob(self, codes: jax.Array) -> jax.Array:
        """log p(codes) for codes (..., positions): the sum of each position's log-probability."""
        return jnp.sum(self.log_probs[jnp.arange(self.positions), codes], axis=-1)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        codes = jax.random.categorical(key, self.log_probs, shape=(n, self.batch_size, self.positions))
        return self.codebook[codes].reshape((n, self.batch_size) + self.event_shape)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """log p(codes) where every position of `value` is a code vector, -inf elsewhere."""
        groups = value.reshape(value.shape[:-1] + (self.positions, self.code_dim))
        codes = nearest_codes(groups, self.codebook)
        exact = jnp.all(is_close(self.codebook[codes], groups), axis=(-2, -1))
        return jnp.where(exact, self.code_log_prob(codes), -jnp.inf)

    def mean(self) -> jax.Array:
        centre = jnp.exp(self.log_probs) @ self.codebook  # (positions, code_dim)
        return jnp.broadcast_to(centre.reshape(-1), self.batch_shape + self.event_shape)

    def stddev(self) -> jax.Array:
        second = jnp.exp(self.log_probs) @ jnp.square(self.codebook)
        centre = jnp.exp(self.log_probs) @ self.codebook
        spread = jnp.sqrt(jnp.maximum(second - jnp.square(centre), 0.0))
        return jnp.broadcast_to(spread.reshape(-1), self.batch_shape + self.event_shape)


def uniform_log_probs(positions: int, num_codes: int) -> jax.Array:
    return jnp.full((positions, num_codes), -math.log(num_codes))


class VQEncoder(nnx.Module):
    """x -> z_e by dense layers, then each position's nearest code of a learned codebook."""

    latent_kind = "discrete"
    undefined_metrics = {"log_likelihood": UNDEFINED, "log_likelihood_prior": UNDEFINED}

    def __init__(
        self,
        x_shape,
        c_shape,
        latent_dim: int,
        hidden,
        activation: str,
        codebook_size: int,
        code_dim: int,
        *,
        rngs: nnx.Rngs,
    ):
        self.trunk = MLP(size(x_shape) + size(c_shape), hidden, activation, rngs=rngs)
        self.out = dense(hidden[-1] if hidden else size(x_shape) + size(c_shape), latent_dim, rngs=rngs)
        bound = 1.0 / codebook_size  # as the reference implementations: U(-1/K, 1/K)
        self.codebook = nnx.Param(
            jax.random.uniform(rngs.params(), (codebook_size, code_dim), minval=-bound, maxval=bound)
        )
        self.positions = latent_dim // code_dim

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None) -> QuantisedPosterior:
        return QuantisedPosterior(self.out(self.trunk(flatten_with(x, c))), self.codebook[...])


class CodebookPrior(nnx.Module):
    """The uniform prior over the encoder's codebook (shared with the encoder, not copied)."""

    latent_kind = "discrete"

    def __init__(self, encoder: VQEncoder):
        self.encoder = encoder

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> CodePrior:
        codebook = self.encoder.codebook[...]
        return CodePrior(codebook, uniform_log_probs(self.encoder.positions, codebook.shape[0]), batch_size)


class FittedCodePrior(nnx.Module):
    """A categorical over the encoder's codes at every position, independently, fitted after
    training to how often the training split's posteriors choose each code (add-one smoothed).

    Until it is fitted (during training) it is uniform. `code_log_probs` is a plain variable the
    loss never differentiates: the harness fills it by `fit_after_training` when a trained run is
    loaded (`zoo.Run.load`), so sampling and evaluation use the fitted prior.
    """

    latent_kind = "discrete"

    def __init__(self, encoder: VQEncoder):
        self.encoder = encoder
        self.code_log_probs = nnx.Variable(uniform_log_probs(encoder.positions, encoder.codebook.shape[0]))

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> CodePrior:
        log_probs = jax.lax.stop_gradient(self.code_log_probs[...])
        return CodePrior(self.encoder.codebook[...], log_probs, batch_size)

    def fit_after_training(self, model, x: jax.Array, c: Optional[jax.Array], batch_size: int = 1000) -> None:
        """Set each position's log-probabilities to how often the posterior chooses each code for
        the rows of x (`smoothed_code_log_probs`)."""
        codes = posterior_codes(model, x, c, batch_size)
        self.code_log_probs[...] = smoothed_code_log_probs(codes, self.encoder.codebook.shape[0])


def posterior_codes(model, x: jax.Array, c: Optional[jax.Array], batch_size: int = 1000) -> jax.Array:
    """The codes (N, positions) the model's quantised posterior chooses for the N rows of x, `batch_size` at a time."""
    return jnp.concatenate(
        [
            model.encode(x[start : start + batch_size], None if c is None else c[start : start + batch_size]).codes
            for start in range(0, x.shape[0], batch_size)
        ]
    )


def smoothed_code_log_probs(codes: jax.Array, num_codes: int) -> jax.Array:
    """log((n_k + 1) / (N + K)) at each position, n_k how often code k is chosen there among the
    N rows of `codes` (N, positions): add-one smoothing keeps unused codes possible."""
    return jnp.log((code_counts(codes, num_codes) + 1.0) / (codes.shape[0] + num_codes))


def make_vq_encoder(
    x_shape,
    c_shape,
    latent_dim,
    rngs,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    codebook_size: Annotated[int, AtLeast(1)] = 64,
    code_dim: Annotated[int, AtLeast(1)] = 4,
) -> VQEncoder:
    """VQ-VAE encoder: dense layers to z_e, each of its positions quantised to the nearest learned code.

    z_e has `latent_dim / code_dim` positions of `code_dim` units, each replaced by the nearest
    of `codebook_size` codes; pair it with prior `uniform_codebook`.

    >>> enc = make_vq_encoder((8, 8, 1), None, 16, nnx.Rngs(0), hidden=(64,), codebook_size=32, code_dim=4)  # doctest: +SKIP
    """
    if codebook_size < 1 or code_dim < 1:
        raise ValueError(f"codebook_size and code_dim: expected at least 1, got {codebook_size} and {code_dim}")
    if latent_dim % code_dim:
        raise ValueError(f"code_dim: latent_dim ({latent_dim}) must be a multiple of code_dim ({code_dim})")
    check_sizes("hidden", hidden, allow_empty=True)
    activation_fn(activation)
    return VQEncoder(x_shape, c_shape, latent_dim, tuple(hidden), activation, codebook_size, code_dim, rngs=rngs)


def make_uniform_codebook_prior(encoder) -> CodebookPrior:
    """Uniform prior over the VQ encoder's codes, each position independent (no prior fitted after training).

    >>> prior = make_uniform_codebook_prior(make_vq_encoder((8, 8, 1), None, 16, nnx.Rngs(0)))  # doctest: +SKIP
    """
    check_vq_encoder(encoder, "uniform_codebook")
    return CodebookPrior(encoder)


def check_vq_encoder(encoder, prior: str) -> None:
    if not isinstance(encoder, VQEncoder):
        raise zoo.ModelBuildError(
            f"prior {prior!r} draws the codes of encoder 'vq_mlp'; the recipe's encoder is {type(encoder).__name__}"
        )


def make_fitted_codebook_prior(encoder) -> FittedCodePrior:
    """A categorical over the VQ encoder's codes at every position, fitted after training to the
    training split's code counts (add-one smoothed); uniform while training.

    >>> prior = make_fitted_codebook_prior(make_vq_encoder((8, 8, 1), None, 16, nnx.Rngs(0)))  # doctest: +SKIP
    """
    check_vq_encoder(encoder, "fitted_codebook")
    return FittedCodePrior(encoder)


CODEBOOK = "encoder.codebook"


def ema_targets(q: QuantisedPosterior, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(targets (K, d), used (K,)): each code's target, the mean of the encoder outputs assigned
    to it in the batch, or, for a code the batch does not use, one of the batch's encoder outputs
    drawn at random (where a dead code restarts)."""
    groups = jax.lax.stop_gradient(q.z_e).reshape(-1, q.codebook.shape[1])  # (B * positions, d)
    assigned = jax.nn.one_hot(q.codes.reshape(-1), q.num_codes, dtype=groups.dtype)  # (B * positions, K)
    counts = assigned.sum(axis=0)
    means = (assigned.T @ groups) / jnp.maximum(counts, 1.0)[:, None]
    restarts = groups[jax.random.randint(rng, (q.num_codes,), 0, groups.shape[0])]
    used = counts > 0
    return jnp.where(used[:, None], means, restarts), used


def codebook_ema_loss(q: QuantisedPosterior, rng: jax.Array, decay: float, restart_rate: float) -> jax.Array:
    """A loss whose gradient step at learning rate 1 (plain SGD) is the EMA codebook update of
    van den Oord et al. (appendix A.1), with the batch's means in place of smoothed counts:
    e_k <- decay e_k + (1 - decay) mean of the z_e assigned to k; and a code the batch leaves
    unused moves a `restart_rate` of the way to a random encoder output (a dead-code restart)."""
    targets, used = ema_targets(q, rng)
    rate = jnp.where(used, 1.0 - decay, restart_rate)
    return 0.5 * jnp.sum(rate * jnp.sum(jnp.square(q.codebook - targets), axis=-1))


def vq(
    commitment: Annotated[float, AtLeast(0)] = 0.25,
    codebook_update: Literal["loss", "ema"] = "loss",
    ema_decay: Annotated[float, Between(0, 1)] = 0.99,
    restart_rate: Annotated[float, Between(0, 1)] = 0.1,
) -> zoo.Objective:
    """The VQ-VAE loss: -log p(x | z_q) + codebook loss + commitment * commitment loss (van den Oord et al.).

    `codebook_update: ema` trains the codebook by exponential moving averages of the encoder
    outputs assigned to each code (`ema_decay`), with dead codes restarted at encoder outputs
    (`restart_rate` of the way per step): the codebook is then its own parameter group
    `codebook_ema`, which the recipe must train with plain SGD at learning rate 1
    (`train.parameter_groups.codebook_ema: {optimizer: {name: sgd}, learning_rate: 1.0}`), so that
    the gradient step of `codebook_ema_loss` is the EMA update.

    Metrics: the ELBO against the prior over codes, both losses and the batch's code perplexity.

    >>> loss, metrics = vq(commitment=0.25)(model, Batch(x), rng)  # doctest: +SKIP
    """
    if not commitment >= 0:
        raise ValueError(f"commitment: expected a weight >= 0, got {commitment}")
    ema = codebook_update == "ema"

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        q = model.encode(batch.x, batch.c)
        log_likelihood = model.decode(q.sample(seed=rng), batch.c).log_prob(batch.x)
        kl = q.kl_divergence(model.prior_distribution(batch.c, batch.x.shape[0]))
        codebook, committed = q.codebook_loss().mean(), q.commitment_loss().mean()
        counts = code_counts(q.codes.reshape(-1), q.num_codes)  # one count for both code-use metrics
        # With EMA updates the codebook is trained by its own group: no codebook loss here.
        loss = -log_likelihood.mean() + (0.0 if ema else codebook) + commitment * committed
        return loss, {
            "elbo": (log_likelihood - kl).mean(),
            "log_likelihood": log_likelihood.mean(),
            "kl": kl.mean(),
            "codebook_loss": codebook,
            "commitment_loss": committed,
            "perplexity": perplexity_of_counts(counts),
            "codebook_usage": jnp.mean(counts > 0),
        }

    def codebook_loss(model, batch: zoo.Batch, rng, step=None):
        q = model.encode(batch.x, batch.c)
        return codebook_ema_loss(q, jax.random.fold_in(rng, 1), ema_decay, restart_rate), {}

    loss_fn.latent_kinds = ("discrete",)  # type: ignore[attr-defined]
    if ema:
        loss_fn.parameter_groups = (  # type: ignore[attr-defined]
            ParameterGroup("model", (), loss_fn),
            ParameterGroup("codebook_ema", (CODEBOOK,), codebook_loss),
        )
    return loss_fn


vq.parameter_groups = ("model", "codebook_ema")  # type: ignore[attr-defined]  # the second only with codebook_update: ema


# The conformance suite (zoo.testing) checks each with the discrete partners it needs.
SMALL_VQ_ENCODER = {"name": "vq_mlp", "hidden": [16], "codebook_size": 8, "code_dim": 2}
make_vq_encoder.conformance = {  # type: ignore[attr-defined]
    "partners": {"prior": {"name": "uniform_codebook"}},
    "options": {
        "hidden": [16],
        "codebook_size": 8,
        "code_dim": 2,
    },
}
make_uniform_codebook_prior.conformance = {"partners": {"encoder": SMALL_VQ_ENCODER}}  # type: ignore[attr-defined]
make_fitted_codebook_prior.conformance = {"partners": {"encoder": SMALL_VQ_ENCODER}}  # type: ignore[attr-defined]
make_fitted_codebook_prior.sampler = True  # type: ignore[attr-defined]  # also `zoo sample RUN --sampler fitted_codebook`
vq.conformance = {"partners": {"encoder": SMALL_VQ_ENCODER, "prior": {"name": "uniform_codebook"}}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """The VQ-VAE's encoder, prior over codes and loss."""
    register("encoder", "vq_mlp", make_vq_encoder)
    register("prior", "uniform_codebook", make_uniform_codebook_prior)
    register("prior", "fitted_codebook", make_fitted_codebook_prior)
    register("objective", "vq", vq)
