"""The conformance suite (zoo.testing) over every registered component and every
recipe in registry.yaml: coverage grows with the zoo, as timm's every-model test."""

import json

import pytest

from tests.conftest import first_party_registry
from zoo.testing import check_component, check_recipe

REGISTRY = first_party_registry()
COMPONENTS = [(c.kind, c.name) for c in REGISTRY.list()]


@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}:{n}" for k, n in COMPONENTS])
def test_component_conforms(registry, kind, name, idx_dir, amat_dir, tmp_path):
    options = None
    if kind == "dataset" and name != "digits":
        # Datasets read files: the suite's own IDX (or .amat) files, prepared in a fresh cache.
        options = {"source_dir": str(amat_dir if name == "binarized_mnist" else idx_dir), "cache_dir": str(tmp_path)}
        if name != "binarized_mnist":
            options["validation_size"] = 50
    passed = check_component(registry, kind, name, options)
    assert passed


def test_every_variant_conforms(registry, book, idx_dir, tmp_path):
    # One test over all variants: each builds, has the right shapes, a finite
    # loss equal with and without jit, and trains a step. Variants of the
    # MNIST family read the suite's own 28x28 IDX files.
    for variant in book.names():
        dataset = book.raw(variant)["dataset"]
        overrides = ["train.batch_size=4"]
        if dataset["name"] != "digits":
            overrides.append("dataset=" + json.dumps({**dataset, "source_dir": str(idx_dir), "cache_dir": str(tmp_path), "validation_size": 50}))
        check_recipe(book.resolve(variant, registry, overrides), registry)


def test_conformance_catches_a_broken_component(registry):
    import jax.numpy as jnp
    from flax import nnx

    import zoo
    from plugins.mlp import make_mlp_decoder

    def make_nan_decoder(latent_dim, c_shape, output_shape, rngs):
        """A decoder whose output is NaN."""
        inner = make_mlp_decoder(latent_dim, c_shape, output_shape, rngs, hidden=(4,))

        class NaNDecoder(nnx.Module):
            def __init__(self):
                self.inner = inner

            def __call__(self, z, c=None):
                return self.inner(z, c) * jnp.nan

        return NaNDecoder()

    broken = zoo.Registry()
    for component in registry.list():
        broken.register(component.kind, component.name, component.factory, plugin=component.plugin)
    broken.register("decoder", "nan", make_nan_decoder, plugin="test")
    with pytest.raises(AssertionError, match="loss is not finite"):
        check_component(broken, "decoder", "nan")
