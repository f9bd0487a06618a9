"""What the conformance suite (zoo.testing) catches: each test registers one deliberately
broken component through a test plugin and expects the suite to name the fault."""

import math

import distrax
import jax.numpy as jnp
import pytest
from flax import nnx

from vae_zoo_plugins.base.likelihoods import make_bernoulli
from vae_zoo_plugins.base.mlp import make_mlp_decoder, make_mlp_encoder
from tests.conftest import first_party_registry, plugin_of
from zoo.core.objectives import elbo
from zoo.testing import check_component


def wrapped(make_inner, call):
    """An nnx module around a first-party network, whose output `call(inner, *args)` computes."""

    class Wrapped(nnx.Module):
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *args):
            return call(self.inner, *args)

    return Wrapped(make_inner())


def make_constant_encoder(x_shape, c_shape, latent_dim, rngs):
    """q(z) the same for every x: a learned Gaussian broadcast to the batch."""

    class ConstantEncoder(nnx.Module):
        def __init__(self):
            self.loc = nnx.Param(jnp.zeros((latent_dim,)))

        def __call__(self, x, c=None):
            loc = jnp.broadcast_to(self.loc[...], (x.shape[0], latent_dim))
            return distrax.MultivariateNormalDiag(loc, jnp.ones_like(loc))

    return ConstantEncoder()


def make_z_blind_decoder(latent_dim, c_shape, output_shape, rngs):
    """A decoder fed zeros instead of z."""
    inner = lambda: make_mlp_decoder(latent_dim, c_shape, output_shape, rngs, hidden=(4,))  # noqa: E731
    return wrapped(inner, lambda net, z, c=None: net(jnp.zeros_like(z), c))


def make_nan_gradient_decoder(latent_dim, c_shape, output_shape, rngs):
    """A decoder adding sqrt(0 * z): the value is finite, its gradient NaN."""
    inner = lambda: make_mlp_decoder(latent_dim, c_shape, output_shape, rngs, hidden=(4,))  # noqa: E731

    def call(net, z, c=None):
        out = net(z, c)
        return out + jnp.sqrt(jnp.sum(0.0 * z, axis=-1)).reshape((-1,) + (1,) * (out.ndim - 1))

    return wrapped(inner, call)


class MeanOverEvent(distrax.Distribution):
    """A distribution whose log_prob is its inner one's divided by the event size (a mean, not a sum)."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def event_shape(self):
        return self.inner.event_shape

    @property
    def batch_shape(self):
        return self.inner.batch_shape

    def _sample_n(self, key, n):
        return self.inner.sample(seed=key, sample_shape=n)

    def log_prob(self, value):
        return self.inner.log_prob(value) / math.prod(self.event_shape)

    def mean(self):
        return self.inner.mean()

    def mode(self):
        return self.inner.mode()


class MeanBernoulli:
    """The Bernoulli likelihood with log_prob averaged over the pixels."""

    params_per_dim = 1

    def __call__(self, params):
        return MeanOverEvent(make_bernoulli()(params))


class PerPixelBernoulli:
    """A Bernoulli per pixel, not one distribution over the image: log_prob is not summed."""

    params_per_dim = 1

    def __call__(self, params):
        return distrax.Bernoulli(logits=params[..., 0])


class WideLogProbNormal(distrax.MultivariateNormalDiag):
    """Samples N(loc, scale^2) but scores N(loc, (2 scale)^2)."""

    def log_prob(self, value):
        return distrax.MultivariateNormalDiag(self.loc, 2.0 * self.scale_diag).log_prob(value)


class WidePrior(nnx.Module):
    def __init__(self, latent_dim):
        self.latent_dim = latent_dim

    def __call__(self, c, batch_size):
        shape = (batch_size, self.latent_dim)
        return WideLogProbNormal(jnp.zeros(shape), jnp.ones(shape))


class UnnormalisedNormal(distrax.MultivariateNormalDiag):
    """log_prob off by a constant: its density integrates to e."""

    def log_prob(self, value):
        return super().log_prob(value) + 1.0


def make_unnormalised_encoder(x_shape, c_shape, latent_dim, rngs):
    """The MLP encoder, its Gaussian scored one nat too high."""
    inner = lambda: make_mlp_encoder(x_shape, c_shape, latent_dim, rngs, hidden=(8,))  # noqa: E731

    def call(net, x, c=None):
        q = net(x, c)
        return UnnormalisedNormal(q.loc, q.scale_diag)

    return wrapped(inner, call)


def make_eager_only_elbo():
    """The ELBO, refusing a huge loss with a Python branch on its value (fine eagerly, not under jit)."""
    inner = elbo()

    def loss_fn(model, batch, rng, step=None):
        loss, metrics = inner(model, batch, rng)
        if float(loss) > 1e9:
            raise ValueError("loss too large")
        return loss, metrics

    return loss_fn


BROKEN = plugin_of(
    "broken_for_conformance",
    ("encoder", "constant", make_constant_encoder),
    ("encoder", "unnormalised", make_unnormalised_encoder),
    ("decoder", "z_blind", make_z_blind_decoder),
    ("decoder", "nan_gradient", make_nan_gradient_decoder),
    ("likelihood", "mean_bernoulli", MeanBernoulli),
    ("likelihood", "per_pixel_bernoulli", PerPixelBernoulli),
    ("prior", "wide_log_prob", lambda latent_dim: WidePrior(latent_dim)),
    ("objective", "eager_only", make_eager_only_elbo),
)


@pytest.fixture(scope="module")
def broken():
    return first_party_registry(BROKEN)


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("encoder", "constant", r"the encoder's q\(z \| x, c\) does not depend on x"),
        ("decoder", "z_blind", "the decoder's output does not depend on z"),
        (
            "likelihood",
            "mean_bernoulli",
            r"exp\(log_prob\) sums to .* not 1: its log_prob must be the density of the whole event",
        ),
        ("likelihood", "per_pixel_bernoulli", r"gives log-probabilities of shape \(2, 8, 8, 1\) for a batch of 2"),
        ("prior", "wide_log_prob", r"prior 'wide_log_prob': its log_prob does not fit its samples: .* \(expected -1\)"),
        ("encoder", "unnormalised", r"encoder 'unnormalised': exp\(log_prob\) integrates to \[2\.7"),
        ("decoder", "nan_gradient", "the loss has non-finite gradients"),
        ("objective", "eager_only", "the loss fails under jax.jit: .*Concretization"),
    ],
)
def test_conformance_names_the_fault(broken, kind, name, message):
    with pytest.raises(AssertionError, match=message):
        check_component(broken, kind, name)
