"""The one latent-variable model behind every variant, assembled from components.

p(x, z | c) = p(z | c) p(x | z, c), with recognition model q(z | x, c). For an
unconditional VAE `c` is None and the prior is N(0, I).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Optional

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

from zoo.core.contract import KINDS_OF_MODEL, check_model
from zoo.errors import ModelBuildError
from zoo.core.divergence import sample_with_kl
from zoo.core.interfaces import Array, Shape, latent_kind, undefined_metrics
from zoo.core.recipes import dump, latent_sizes
from zoo.core.registry import Registry, build_component


# Decoder rows per importance-sampling chunk: small enough that a layer's
# activations stay in cache (the seed decoder ran at 75% of the matmul peak
# with 2500 rows against 45% with 25000, measured here), large enough for
# efficient matmuls.
ROWS_PER_CHUNK = 2500
# ... and at most this many decoder output values (ROWS_PER_CHUNK rows of a 28x28 grey image with
# up to 4 parameters a pixel, so every 28x28 model keeps the chunks above). A larger image, in
# colour or with a mixture per pixel, takes fewer rows: a 64x64x3 image with a 5-component
# logistic mixture asked XLA for 35.6 GB in chunks of 2500 rows.
DECODER_VALUES_PER_CHUNK = ROWS_PER_CHUNK * 28 * 28 * 4


def samples_per_chunk(batch: int, x_shape: Shape, params_per_dim: int) -> int:
    """Importance samples drawn together for a batch of `batch` examples: ROWS_PER_CHUNK decoder
    rows, fewer where a row's decoder output (x's size times the likelihood's parameters per
    dimension) would exceed DECODER_VALUES_PER_CHUNK values; at least 1."""
    by_rows = ROWS_PER_CHUNK // batch
    by_values = DECODER_VALUES_PER_CHUNK // (batch * math.prod(x_shape) * params_per_dim)
    return max(1, min(by_rows, by_values))


# The evaluation metric of each importance-sampling proposal (zoo.core.interfaces.EVALUATION_METRICS).
LOG_LIKELIHOOD_METRIC = {"posterior": "log_likelihood", "prior": "log_likelihood_prior"}


class ElboTerms(NamedTuple):
    """The parts of the ELBO log p(x|z,c) - KL(q || p(z|c)) at one z ~ q(z|x,c), per example."""

    q: distrax.Distribution
    prior: distrax.Distribution
    z: Array
    p_x: distrax.Distribution
    log_likelihood: Array
    kl: Array


def repeat_rows(c: Optional[Array], times: int) -> Optional[Array]:
    """Tile a condition batch (B, ...) to (times * B, ...), matching z samples (times, B, D)."""
    if c is None:
        return None
    return jnp.broadcast_to(c, (times,) + c.shape).reshape((times * c.shape[0],) + c.shape[1:])


class LatentVariableModel(nnx.Module):
    """A VAE or CVAE: encoder q(z|x,c), prior p(z|c), decoder and likelihood p(x|z,c)."""

    def __init__(
        self,
        encoder: Any,
        prior: Any,
        decoder: Any,
        likelihood: Any,
        *,
        x_shape: Shape,
        c_shape: Optional[Shape],
        latent_dim: int,
    ) -> None:
        self.encoder = encoder
        self.prior = prior
        self.decoder = decoder
        self.likelihood = likelihood
        self.x_shape = tuple(x_shape)
        self.c_shape = None if c_shape is None else tuple(c_shape)
        self.latent_dim = latent_dim

    def attach_networks(self, networks: Mapping[str, nnx.Module]) -> None:
        """Carry the networks an objective adds (a discriminator) as `self.networks[name]`, so that
        they are split, stepped and checkpointed with the model's own; a model without any has no
        `networks` attribute (its parameters, and checkpoints, are as they always were)."""
        if networks:
            self.networks = nnx.Dict(dict(networks))

    @property
    def conditional(self) -> bool:
        """True for a CVAE (the model takes a condition c)."""
        return self.c_shape is not None

    @property
    def latent_kind(self) -> str:
        """One of LATENT_KINDS, as the encoder declares it (see `zoo.core.interfaces.latent_kind`)."""
        return latent_kind(self.encoder)

    @property
    def undefined_metrics(self) -> dict[str, str]:
        """Evaluation metrics that do not apply to this model, each with the reason, as its
        components declare them (`undefined_metrics = {"log_likelihood": "why"}`), e.g. a
        VQ-VAE's point-mass posterior, which is no importance-sampling proposal. The
        objective it was trained with may declare more (`zoo.evaluation.evaluate.evaluate(objective=)`).
        """
        return undefined_metrics(self.encoder, self.prior, self.decoder, self.likelihood)

    def encode(self, x: Array, c: Optional[Array] = None) -> distrax.Distribution:
        """q(z | x, c)."""
        return self.encoder(x, c)

    def prior_distribution(self, c: Optional[Array] = None, batch_size: int = 1) -> distrax.Distribution:
        """p(z | c) for each row of c (or `batch_size` rows when unconditional)."""
        return self.prior(c, c.shape[0] if c is not None else batch_size)

    def decode(self, z: Array, c: Optional[Array] = None) -> distrax.Distribution:
        """p(x | z, c)."""
        return self.likelihood(self.decoder(z, c))

    def sample(self, rng: Array, c: Optional[Array] = None, num_samples: int = 1, temperature: float = 1.0) -> Array:
        """Mean of p(x | z, c) at z drawn from the prior, its spread scaled by `temperature`."""
        prior = self.prior_distribution(c, num_samples)
        centre = prior.mean()
        z = centre + temperature * (prior.sample(seed=rng) - centre)
        return self.decode(z, c).mean()

    def reconstruct(self, x: Array, c: Optional[Array] = None) -> Array:
        """Mean of p(x | z, c) at the posterior mean of q(z | x, c)."""
        return self.decode(self.encode(x, c).mean(), c).mean()

    def elbo_terms(self, x: Array, c: Optional[Array], rng: Array) -> "ElboTerms":
        """The ELBO's parts at one reparameterised z ~ q(z|x,c): the one place they are computed
        (objectives, evaluation and the MMD objectives all take them from here)."""
        q, prior = self.encode(x, c), self.prior_distribution(c, x.shape[0])
        z, kl = sample_with_kl(q, prior, rng)
        p_x = self.decode(z, c)
        return ElboTerms(q, prior, z, p_x, p_x.log_prob(x), kl)

    def forward(self, x: Array, c: Optional[Array], rng: Array) -> tuple[Array, Array, Array]:
        """(mode of p(x|z,c), log p(x|z,c), KL(q||p)) at one reparameterised z ~ q(z|x,c)."""
        terms = self.elbo_terms(x, c, rng)
        return terms.p_x.mode(), terms.log_likelihood, terms.kl

    def elbo(self, x: Array, c: Optional[Array], rng: Array) -> Array:
        """Per-example evidence lower bound E_q[log p(x|z,c)] - KL(q || p(z|c))."""
        _, log_likelihood, kl = self.forward(x, c, rng)
        return log_likelihood - kl

    def log_importance_weights(
        self, x: Array, c: Optional[Array], rng: Array, num_samples: int, proposal: str = "posterior"
    ) -> Array:
        """log p(x, z_k | c) - log r(z_k) for z_k ~ r, shape (num_samples, B).

        The proposal r is q(z | x, c) ("posterior") or p(z | c) ("prior": the
        weights are then p(x | z_k, c), the estimator for models trained
        without an encoder, such as a GSNN).
        """
        log_px, log_ratio = self.log_importance_parts(x, c, rng, num_samples, proposal)
        return log_px + log_ratio

    def log_importance_parts(
        self, x: Array, c: Optional[Array], rng: Array, num_samples: int, proposal: str = "posterior"
    ) -> tuple[Array, Array]:
        """The two parts of `log_importance_weights`, log p(x | z_k, c) and log p(z_k | c) - log r(z_k),
        each (num_samples, B): an objective that weights them differently (a KL warm-up inside the
        IWAE bound) reads them apart."""
        self._check_log_likelihood_defined(proposal)
        q = self.encode(x, c) if proposal == "posterior" else None
        return self._log_weight_parts(x, c, q, self.prior_distribution(c, x.shape[0]), rng, num_samples, proposal)

    def _check_log_likelihood_defined(self, proposal: str) -> None:
        reason = (
            self.undefined_metrics.get(LOG_LIKELIHOOD_METRIC[proposal]) if proposal in LOG_LIKELIHOOD_METRIC else None
        )
        if reason is not None:
            raise ModelBuildError(f"the importance-sampled log-likelihood is not defined for this model: {reason}")

    def _log_weights(
        self,
        x: Array,
        c: Optional[Array],
        q: Optional[distrax.Distribution],
        prior: distrax.Distribution,
        rng: Array,
        num_samples: int,
        proposal: str,
    ) -> Array:
        """`log_importance_weights` with q(z | x, c) and p(z | c) already computed."""
        log_px, log_ratio = self._log_weight_parts(x, c, q, prior, rng, num_samples, proposal)
        return log_px + log_ratio

    def _log_weight_parts(
        self,
        x: Array,
        c: Optional[Array],
        q: Optional[distrax.Distribution],
        prior: distrax.Distribution,
        rng: Array,
        num_samples: int,
        proposal: str,
    ) -> tuple[Array, Array]:
        """`log_importance_parts` with q(z | x, c) and p(z | c) already computed."""
        batch = x.shape[0]
        if proposal == "posterior":
            assert q is not None, "the posterior proposal needs q(z | x, c)"
            # log q(z) from the sampling pass: a flow needs no inverse, a hierarchy scores each layer as drawn.
            z, log_q = q.sample_and_log_prob(seed=rng, sample_shape=(num_samples,))
            log_ratio = prior.log_prob(z) - log_q
        elif proposal == "prior":
            z = prior.sample(seed=rng, sample_shape=(num_samples,))
            log_ratio = jnp.zeros(z.shape[:2])
        else:
            raise ValueError(f"unknown proposal {proposal!r}; proposals: posterior, prior")
        flat_z = z.reshape((num_samples * batch, self.latent_dim))
        p_x = self.decode(flat_z, repeat_rows(c, num_samples))
        log_px = p_x.log_prob(repeat_rows(x, num_samples)).reshape((num_samples, batch))
        return log_px, log_ratio

    def log_likelihood(
        self,
        x: Array,
        c: Optional[Array],
        rng: Array,
        num_samples: int = 5000,
        chunk_size: Optional[int] = None,
        proposal: str = "posterior",
    ) -> Array:
        """Importance-sampled log p(x | c) = log (1/K) sum_k p(x, z_k|c) / q(z_k|x,c), per example.

        The K samples are drawn `chunk_size` at a time (lax.map), so memory
        holds one chunk of decoder activations whatever K is; by default a
        chunk is about ROWS_PER_CHUNK decoder rows (fewer for large outputs: samples_per_chunk). The encoder and prior run
        once, outside the loop.
        """
        self._check_log_likelihood_defined(proposal)
        if chunk_size is not None and chunk_size < 1 or num_samples < 1:
            raise ValueError(f"num_samples ({num_samples}) and chunk_size ({chunk_size}) must be at least 1")
        default = samples_per_chunk(x.shape[0], x.shape[1:], self.likelihood.params_per_dim)
        chunk_size = min(chunk_size or default, num_samples)
        num_chunks = math.ceil(num_samples / chunk_size)
        keys = jax.random.split(rng, num_chunks)
        q = self.encode(x, c) if proposal == "posterior" else None
        prior = self.prior_distribution(c, x.shape[0])
        log_w = jax.lax.map(lambda key: self._log_weights(x, c, q, prior, key, chunk_size, proposal), keys)
        log_w = log_w.reshape((num_chunks * chunk_size, x.shape[0]))[:num_samples]
        return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)


def build_model(
    recipe: Mapping[str, Any],
    registry: Registry,
    *,
    x_shape: Shape,
    c_shape: Optional[Shape],
    rngs: nnx.Rngs,
    example: Optional[tuple[Array, Optional[Array]]] = None,
) -> LatentVariableModel:
    """Assemble a model from a resolved recipe; components that cannot fit are refused here.

    Every component's output is checked against its kind's contract (`zoo.core.contract`):
    shapes and dtypes by abstract tracing, and, given `example` = (x, c), a few real
    examples, finite values. A violation is a `zoo.core.contract.ContractError`.
    """
    sizes = latent_sizes(recipe)
    latent_dim = sum(sizes)  # a hierarchy's layers are concatenated, bottom first, into one z
    likelihood = _build(registry, recipe, "likelihood")
    params_per_dim = getattr(likelihood, "params_per_dim", None)
    if not isinstance(params_per_dim, int) or params_per_dim < 1:
        raise ModelBuildError(
            f"likelihood {recipe['likelihood']['name']!r} does not declare params_per_dim (a positive int)"
        )
    output_shape = tuple(x_shape) + (params_per_dim,)
    shared = dict(latent_dim=latent_dim, latent_sizes=sizes, c_shape=c_shape, rngs=rngs)
    encoder = _build(registry, recipe, "encoder", x_shape=tuple(x_shape), **shared)
    # A prior may use the encoder (the VampPrior's pseudo-inputs go through it).
    prior = _build(registry, recipe, "prior", encoder=encoder, x_shape=tuple(x_shape), **shared)
    decoder = _build(registry, recipe, "decoder", output_shape=output_shape, **shared)
    if latent_kind(encoder) != latent_kind(prior):
        raise ModelBuildError(
            f"encoder {recipe['encoder']['name']!r} gives a {latent_kind(encoder)} latent but prior "
            f"{recipe['prior']['name']!r} is over a {latent_kind(prior)} one"
        )
    model = LatentVariableModel(
        encoder, prior, decoder, likelihood, x_shape=x_shape, c_shape=c_shape, latent_dim=latent_dim
    )
    check_model(model, recipe, example, made_by=made_by(recipe, registry))
    return model


def made_by(recipe: Mapping[str, Any], registry: Registry) -> Optional[tuple[Any, ...]]:
    """What decides a model's abstract contract checks besides its classes and shapes: the resolved
    recipe as text and the factory of each component (`check_model`'s `made_by`); None when the
    recipe cannot be written as text."""
    try:
        text = dump(recipe)
    except Exception:  # a recipe holding objects YAML cannot write: checked every time
        return None
    return (text, *(registry.get(kind, recipe[kind]["name"]).factory for kind in KINDS_OF_MODEL))


def _build(registry: Registry, recipe: Mapping[str, Any], kind: str, **context: Any) -> Any:
    """Build one component of the model; a factory's refusal names the component."""
    return build_component(registry, kind, recipe[kind], ModelBuildError, **context)
