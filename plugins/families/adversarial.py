"""Objectives with a discriminator, a network of their own trained on its own loss in its own
parameter group (zoo/core/groups.py): FactorVAE (Kim and Mnih 2018), the adversarial autoencoder
(Makhzani et al. 2016) and VAE-GAN (Larsen et al. 2016).

Every discriminator is an MLP with one logit out, D = sigmoid(logit) the probability that its
input is "real"; it is trained by binary cross-entropy, log(1 + e^-l) on real inputs and
log(1 + e^l) on fake ones, while the model's own loss treats the discriminator as fixed. The
groups' gradients are taken apart, so neither loss moves the other's parameters (no stop_gradient
is needed, and none is written: the discriminator's loss reaches the encoder, but its group
differentiates it with respect to the discriminator alone).

- factor_vae: the discriminator tells z ~ q(z) (the batch's posterior samples) from z with every
  unit permuted across the batch independently, a sample of prod_d q(z_d). Its logit estimates
  log q(z) / prod_d q(z_d) (the density-ratio trick), whose mean is the total correlation; the
  model minimises -ELBO + gamma TC. Kim and Mnih draw the permuted codes from a second batch; here
  they are the same batch's, one draw per step.
- aae: the discriminator tells z ~ p(z) (real) from z ~ q(z | x) (fake); the autoencoder minimises
  the reconstruction -log p(x | z) + adversarial_weight x log(1 + e^-l(z)) (the non-saturating
  generator loss), with a Gaussian posterior and prior.
- vae_gan: the discriminator tells data x (real) from reconstructions x~ = mean of p(x | z), z ~
  q(z | x), and samples x_p, z ~ p(z) (fake). Reconstruction is measured in its last hidden layer,
  L_like = 1/2 |Dis_l(x) - Dis_l(x~)|^2 (a unit Gaussian on the features), and three groups train
  on three losses: the encoder on KL + L_like, the decoder (with the prior and likelihood) on
  gamma L_like + the generator loss of x~ and x_p, the discriminator on its cross-entropy.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo import AtLeast
from zoo.core.groups import ParameterGroup
from typing import Annotated
from vae_zoo_plugins.layers.dense import MLP, check_sizes, dense, flatten_with

DISCRIMINATOR = "networks.discriminator"
Weight = Annotated[float, AtLeast(0)]
Hidden = Sequence[Annotated[int, AtLeast(1)]]

NOT_TRAINED_ON_PIXELS = (
    "not defined for VAE-GAN: its decoder is trained on the discriminator's features, never on the "
    "pixel likelihood log p(x | z), so a bound on log p(x) through that likelihood would score a "
    "distribution the model was not fitted to"
)


class Discriminator(nnx.Module):
    """An MLP from a flat input (B, in_features) to one logit per row; `features` is its last hidden layer."""

    def __init__(self, in_features: int, hidden: Sequence[int], activation: str, *, rngs: nnx.Rngs):
        check_sizes("discriminator_hidden", hidden, allow_empty=False)
        self.trunk = MLP(in_features, tuple(hidden), activation, rngs=rngs)
        self.out = dense(hidden[-1], 1, rngs=rngs)

    def features(self, h: jax.Array) -> jax.Array:
        return self.trunk(h)

    def __call__(self, h: jax.Array) -> jax.Array:
        return self.out(self.features(h))[:, 0]


def real_and_fake_loss(real_logits: jax.Array, fake_logits: Sequence[jax.Array]) -> jax.Array:
    """The discriminator's binary cross-entropy: log(1 + e^-l) on real rows, log(1 + e^l) on each fake set."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + sum(jnp.mean(jax.nn.softplus(f)) for f in fake_logits)


def accuracy(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """How often the discriminator is right, on real and fake rows together."""
    return 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits <= 0))


def permute_dims(z: jax.Array, rng: jax.Array) -> jax.Array:
    """Every unit (column) of z (B, D) shuffled across the batch independently: a sample of prod_d q(z_d)."""
    keys = jax.random.split(rng, z.shape[1])
    return jax.vmap(lambda column, key: jax.random.permutation(key, column), in_axes=(1, 0), out_axes=1)(z, keys)


def make_discriminator(in_features: int, hidden: Sequence[int], activation: str, rngs: Optional[nnx.Rngs]):
    return Discriminator(in_features, hidden, activation, rngs=rngs if rngs is not None else nnx.Rngs(0))


def factor_vae_discriminator_loss(discriminator, z: jax.Array, rng: jax.Array) -> tuple[jax.Array, dict]:
    """FactorVAE's discriminator loss on codes z (B, D): q(z) real, its permutation fake."""
    real, fake = discriminator(z), discriminator(permute_dims(z, rng))
    return real_and_fake_loss(real, [fake]), {"accuracy": accuracy(real, fake)}


def factor_vae(
    gamma: Weight = 10.0,
    discriminator_hidden: Hidden = (256, 256),
    discriminator_activation: str = "relu",
    latent_dim: int = 1,
    rngs: Optional[nnx.Rngs] = None,
) -> zoo.Objective:
    """FactorVAE (Kim and Mnih 2018): -ELBO + gamma TC, the total correlation by a discriminator of permuted codes.

    Parameter groups `model` and `discriminator` (`train.parameter_groups.discriminator` sets its optimiser).

    >>> loss, metrics = factor_vae(gamma=10.0, latent_dim=10, rngs=nnx.Rngs(0))(model, Batch(x), rng)  # doctest: +SKIP
    """
    if not gamma >= 0:
        raise ValueError(f"gamma: expected a weight >= 0, got {gamma}")
    discriminator = make_discriminator(latent_dim, discriminator_hidden, discriminator_activation, rngs)

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        sample_rng, _ = jax.random.split(rng)
        terms = model.elbo_terms(batch.x, batch.c, sample_rng)
        tc = jnp.mean(model.networks["discriminator"](terms.z))  # log D / (1 - D) is the logit
        elbo = (terms.log_likelihood - terms.kl).mean()
        return -elbo + gamma * tc, {"elbo": elbo, "kl": terms.kl.mean(), "total_correlation": tc}

    def discriminator_loss(model, batch: zoo.Batch, rng, step=None):
        sample_rng, permute_rng = jax.random.split(rng)  # the model's draw of z, so both see the same codes
        z = model.elbo_terms(batch.x, batch.c, sample_rng).z
        return factor_vae_discriminator_loss(model.networks["discriminator"], z, permute_rng)

    loss_fn.networks = {"discriminator": discriminator}  # type: ignore[attr-defined]
    loss_fn.parameter_groups = (  # type: ignore[attr-defined]
        ParameterGroup("model", (), loss_fn),
        ParameterGroup("discriminator", (DISCRIMINATOR,), discriminator_loss),
    )
    loss_fn.selection_metric = "loss"  # type: ignore[attr-defined]  # the ELBO is not what it optimises
    return loss_fn


def aae(
    adversarial_weight: Weight = 1.0,
    discriminator_hidden: Hidden = (256, 256),
    discriminator_activation: str = "relu",
    latent_dim: int = 1,
    rngs: Optional[nnx.Rngs] = None,
) -> zoo.Objective:
    """The adversarial autoencoder (Makhzani et al. 2016): reconstruction + a discriminator matching q(z) to p(z).

    Parameter groups `model` and `discriminator`.

    >>> loss, metrics = aae(adversarial_weight=1.0, latent_dim=16, rngs=nnx.Rngs(0))(model, Batch(x), rng)  # doctest: +SKIP
    """
    if not adversarial_weight >= 0:
        raise ValueError(f"adversarial_weight: expected a weight >= 0, got {adversarial_weight}")
    discriminator = make_discriminator(latent_dim, discriminator_hidden, discriminator_activation, rngs)

    def codes(model, batch: zoo.Batch, rng):
        """(z ~ q(z | x), z ~ p(z), the ELBO's terms) of one draw."""
        sample_rng, prior_rng = jax.random.split(rng)
        terms = model.elbo_terms(batch.x, batch.c, sample_rng)
        return terms.z, model.prior_distribution(batch.c, batch.x.shape[0]).sample(seed=prior_rng), terms

    def loss_fn(model, batch: zoo.Batch, rng, step=None):
        z, _, terms = codes(model, batch, rng)
        fooling = jnp.mean(jax.nn.softplus(-model.networks["discriminator"](z)))
        reconstruction = -terms.log_likelihood.mean()
        metrics = {"elbo": (terms.log_likelihood - terms.kl).mean(), "kl": terms.kl.mean(), "generator_loss": fooling}
        return reconstruction + adversarial_weight * fooling, metrics

    def discriminator_loss(model, batch: zoo.Batch, rng, step=None):
        z, prior_z, _ = codes(model, batch, rng)
        real, fake = model.networks["discriminator"](prior_z), model.networks["discriminator"](z)
        return real_and_fake_loss(real, [fake]), {"accuracy": accuracy(real, fake)}

    loss_fn.networks = {"discriminator": discriminator}  # type: ignore[attr-defined]
    loss_fn.parameter_groups = (  # type: ignore[attr-defined]
        ParameterGroup("model", (), loss_fn),
        ParameterGroup("discriminator", (DISCRIMINATOR,), discriminator_loss),
    )
    loss_fn.selection_metric = "loss"  # type: ignore[attr-defined]
    return loss_fn


def vae_gan(
    gamma: Weight = 1.0,
    discriminator_hidden: Hidden = (256, 256),
    discriminator_activation: str = "relu",
    x_shape: Sequence[int] = (1,),
    c_shape: Optional[Sequence[int]] = None,
    rngs: Optional[nnx.Rngs] = None,
) -> zoo.Objective:
    """VAE-GAN (Larsen et al. 2016): reconstruction in a discriminator's features, three groups on three losses.

    Parameter groups `encoder` (KL + feature reconstruction; its loss is the one logged), `decoder`
    (gamma x feature reconstruction + fooling the discriminator) and `discriminator`.

    >>> loss, metrics = vae_gan(gamma=1.0, x_shape=(28, 28, 1), rngs=nnx.Rngs(0))(model, Batch(x), rng)  # doctest: +SKIP
    """
    if not gamma >= 0:
        raise ValueError(f"gamma: expected a weight >= 0, got {gamma}")
    in_features = math.prod(x_shape) + (math.prod(c_shape) if c_shape is not None else 0)
    discriminator = make_discriminator(in_features, discriminator_hidden, discriminator_activation, rngs)

    def reconstructions(model, batch: zoo.Batch, rng):
        """(ELBO terms at z ~ q(z | x), the reconstruction x~) of the step's draw."""
        terms = model.elbo_terms(batch.x, batch.c, jax.random.split(rng)[0])
        return terms, terms.p_x.mean()

    def images(model, batch: zoo.Batch, rng):
        """(ELBO terms, x~, and the sample x_p at z ~ p(z)) of the step's draw (x_p only where a loss needs it)."""
        terms, reconstruction = reconstructions(model, batch, rng)
        prior_z = model.prior_distribution(batch.c, batch.x.shape[0]).sample(seed=jax.random.split(rng)[1])
        return terms, reconstruction, model.decode(prior_z, batch.c).mean()

    def feature_reconstruction(model, batch: zoo.Batch, reconstruction: jax.Array) -> jax.Array:
        """1/2 |Dis_l(x) - Dis_l(x~)|^2 per example: -log N(Dis_l(x); Dis_l(x~), I) up to a constant."""
        features = model.networks["discriminator"].features
        difference = features(flatten_with(batch.x, batch.c)) - features(flatten_with(reconstruction, batch.c))
        return 0.5 * jnp.sum(jnp.square(difference), axis=-1)

    def encoder_loss(model, batch: zoo.Batch, rng, step=None):
        terms, reconstruction = reconstructions(model, batch, rng)
        like = feature_reconstruction(model, batch, reconstruction).mean()
        return terms.kl.mean() + like, {"kl": terms.kl.mean(), "feature_reconstruction": like}

    def decoder_loss(model, batch: zoo.Batch, rng, step=None):
        _, reconstruction, sample = images(model, batch, rng)
        like = feature_reconstruction(model, batch, reconstruction).mean()
        logit = model.networks["discriminator"]
        fooling = jnp.mean(jax.nn.softplus(-logit(flatten_with(reconstruction, batch.c)))) + jnp.mean(
            jax.nn.softplus(-logit(flatten_with(sample, batch.c)))
        )
        return gamma * like + fooling, {"generator_loss": fooling}

    def discriminator_loss(model, batch: zoo.Batch, rng, step=None):
        _, reconstruction, sample = images(model, batch, rng)
        logit = model.networks["discriminator"]
        real = logit(flatten_with(batch.x, batch.c))
        fakes = [logit(flatten_with(image, batch.c)) for image in (reconstruction, sample)]
        return real_and_fake_loss(real, fakes), {"accuracy": accuracy(real, fakes[0])}

    encoder_loss.networks = {"discriminator": discriminator}  # type: ignore[attr-defined]
    encoder_loss.parameter_groups = (  # type: ignore[attr-defined]
        ParameterGroup("encoder", ("encoder",), encoder_loss),
        ParameterGroup("decoder", (), decoder_loss),
        ParameterGroup("discriminator", (DISCRIMINATOR,), discriminator_loss),
    )
    encoder_loss.selection_metric = "loss"  # type: ignore[attr-defined]
    encoder_loss.undefined_metrics = {  # type: ignore[attr-defined]
        metric: NOT_TRAINED_ON_PIXELS for metric in ("elbo", "log_likelihood", "log_likelihood_prior")
    }
    return encoder_loss


factor_vae.parameter_groups = ("model", "discriminator")  # type: ignore[attr-defined]
aae.parameter_groups = ("model", "discriminator")  # type: ignore[attr-defined]
vae_gan.parameter_groups = ("encoder", "decoder", "discriminator")  # type: ignore[attr-defined]
# The conformance suite tries each with a small discriminator.
SMALL_DISCRIMINATOR = {"options": {"discriminator_hidden": [8]}}
factor_vae.conformance = SMALL_DISCRIMINATOR  # type: ignore[attr-defined]
aae.conformance = SMALL_DISCRIMINATOR  # type: ignore[attr-defined]
vae_gan.conformance = SMALL_DISCRIMINATOR  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """FactorVAE, the adversarial autoencoder and VAE-GAN."""
    register("objective", "factor_vae", factor_vae)
    register("objective", "aae", aae)
    register("objective", "vae_gan", vae_gan)
