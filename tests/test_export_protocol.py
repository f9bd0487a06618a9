"""`zoo export-web` reads decoders and priors through the public `zoo.core.interfaces.DenseExportable`
alone: what a component declares is exported and checked against the component; attribute
paths, names and first-party classes mean nothing to it. (No browser needed; tests/test_web.py
runs the exported page.)"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo.web.browser_model import ExportError, extract
from zoo.core.assembly import assemble

SMALL = ["encoder.hidden=[8]", "decoder.hidden=[8]"]


def experiment_of(book, registry, variant, *overrides):
    """An untrained experiment of a variant with small networks (no training: export reads the arrays)."""
    return assemble(book.resolve(variant, registry, [*SMALL, *overrides]), registry)


def export(experiment):
    return extract(experiment, *nnx.split(experiment.model))


def flat_inputs(z, c):
    return z if c is None else jnp.concatenate([z, c.reshape((c.shape[0], -1))], axis=-1)


class OneHiddenLayer(nnx.Module):
    """A third-party decoder: its own attribute names and activation, and the protocol."""

    def __init__(self, inputs, output_shape, *, activation="tanh", declared_activation=None, rngs):
        self.first = nnx.Linear(inputs, 8, rngs=rngs)
        self.last = nnx.Linear(8, int(np.prod(output_shape)), rngs=rngs)
        self.output_shape = tuple(output_shape)
        self.activation = activation
        self.declared_activation = declared_activation or activation

    def __call__(self, z, c=None):
        h = getattr(jnp, self.activation)(self.first(flat_inputs(z, c)))
        return self.last(h).reshape((z.shape[0],) + self.output_shape)

    def dense_network(self):
        return zoo.DenseNetwork(
            [(self.first.kernel[...], self.first.bias[...])],
            self.declared_activation,
            {"out": (self.last.kernel[...], self.last.bias[...])},
        )


class AttributesOnly(nnx.Module):
    """The first-party MLP decoder's attributes (trunk.layers, trunk.activation, out), without the protocol."""

    def __init__(self, decoder):
        self.trunk, self.out, self.output_shape = decoder.trunk, decoder.out, decoder.output_shape

    def __call__(self, z, c=None):
        return self.out(self.trunk(flat_inputs(z, c))).reshape((z.shape[0],) + self.output_shape)


@pytest.mark.parametrize(
    ("variant", "overrides"),
    [
        ("vae_mlp", []),  # the MLP decoder, N(0, I) without parameters
        ("cvae_sohn", []),  # and the conditional prior network, loc and log_scale heads
        ("cvae_sohn", ["prior.fixed_scale=0.001"]),  # loc and a constant scale
    ],
)
def test_first_party_decoder_and_prior_export_through_the_protocol(book, registry, variant, overrides):
    experiment = experiment_of(book, registry, variant, *overrides)
    model = experiment.model
    assert isinstance(model.decoder, zoo.DenseExportable)
    browser = export(experiment)  # checked against the model: refused unless it reproduces it
    assert len(browser.decoder.layers) == 1 and browser.decoder.layers[0].kernel.shape[1] == 8
    if variant == "vae_mlp":
        assert browser.prior is None
    else:
        assert isinstance(model.prior, zoo.DenseExportable)
        assert browser.fixed_scale == (0.001 if overrides else None)
        assert sorted(browser.prior.heads) == (["loc"] if overrides else ["loc", "log_scale"])


def test_a_decoder_of_any_shape_is_exported_from_what_it_declares(book, registry):
    experiment = experiment_of(book, registry, "cvae_mlp")
    model = experiment.model
    inputs = model.latent_dim + int(np.prod(model.c_shape))
    model.decoder = OneHiddenLayer(inputs, model.decoder.output_shape, rngs=nnx.Rngs(1))
    browser = export(experiment)
    z, c = np.random.default_rng(0).standard_normal((3, model.latent_dim)), np.eye(10)[[1, 4, 7]]
    expected = np.asarray(model.decoder(jnp.asarray(z, jnp.float32), jnp.asarray(c, jnp.float32))).reshape(3, -1)
    assert browser.decoder.activation == "tanh" and np.abs(browser.decode(z, c) - expected).max() < 1e-4


def test_the_attributes_export_once_read_are_not_enough(book, registry):
    experiment = experiment_of(book, registry, "vae_mlp")
    experiment.model.decoder = AttributesOnly(experiment.model.decoder)
    with pytest.raises(ExportError) as refused:
        export(experiment)
    assert str(refused.value).startswith("decoder 'mlp' (AttributesOnly) is not an MLP: export-web runs dense layers")
    assert "zoo.core.interfaces.DenseExportable" in str(refused.value)


def test_a_declaration_that_does_not_match_the_component_is_refused(book, registry):
    experiment = experiment_of(book, registry, "vae_mlp")
    model = experiment.model
    model.decoder = OneHiddenLayer(
        model.latent_dim, model.decoder.output_shape, declared_activation="relu", rngs=nnx.Rngs(1)
    )
    with pytest.raises(
        ExportError, match=r"^decoder 'mlp': dense layers on \[z, c\]: the exported network does not reproduce"
    ):
        export(experiment)


def test_a_first_party_network_that_is_not_dense_here_says_why(book, registry):
    with pytest.raises(ExportError) as refused:
        export(experiment_of(book, registry, "vae_mlp", "decoder.gated=true"))
    assert str(refused.value).startswith(
        "decoder 'mlp' (MLPDecoder) is not an MLP export-web can run: its layers are gated"
    )


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            lambda net: net._replace(activation="softsign"),
            "decoder 'mlp': activation 'softsign' has no in-browser version",
        ),
        (
            lambda net: net._replace(heads={"mean": net.heads["out"]}),
            "decoder 'mlp': its dense network has no head 'out'",
        ),
        (
            lambda net: net._replace(layers=[(k.T, b) for k, b in net.layers]),
            "decoder 'mlp' layer 0: expected a kernel (2, n)",
        ),
    ],
)
def test_a_malformed_declaration_is_refused_naming_the_component(book, registry, monkeypatch, declared, message):
    experiment = experiment_of(book, registry, "vae_mlp", "latent_dim=2")
    decoder_class = type(experiment.model.decoder)
    declare = decoder_class.dense_network
    monkeypatch.setattr(decoder_class, "dense_network", lambda self: declared(declare(self)))
    with pytest.raises(ExportError) as refused:
        export(experiment)
    assert str(refused.value).startswith(message)
