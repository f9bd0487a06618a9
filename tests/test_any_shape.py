"""Every first-party encoder and decoder builds for images of any (H, W, C), grey or colour,
square or not, and the conv decoder gives exactly (H, W); figures and `zoo sample` keep the
colour. The components come from the registry, so a new one is checked here by itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import first_party_registry
from zoo.core.assembly import assemble
from zoo.core.interfaces import Batch
from zoo.core.recipes import deep_merge, validate
from zoo.testing import PARTNERS, check_shapes, component_recipe, declared

REGISTRY = first_party_registry()
NETWORKS = [(c.kind, c.name) for c in REGISTRY.list() if c.kind in ("encoder", "decoder")]
SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (48, 40, 3)]


@pytest.fixture(scope="module")
def shaped_arrays(tmp_path_factory):
    """An .npz of 12 random uint8 images of each shape, by shape."""
    root = tmp_path_factory.mktemp("shapes")
    files = {}
    for shape in SHAPES:
        images = np.random.default_rng(0).integers(0, 256, (12, *shape), np.uint8)
        files[shape] = root / ("x".join(map(str, shape)) + ".npz")
        np.savez(files[shape], train=images)
    return files


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize(("kind", "name"), NETWORKS, ids=[f"{k}:{n}" for k, n in NETWORKS])
def test_every_network_builds_for_any_image_shape(registry, kind, name, shape, shaped_arrays):
    component = registry.get(kind, name)
    wanted = declared(component)
    partners = deep_merge(PARTNERS, wanted.get("partners", {}))
    partners = deep_merge(partners, {"dataset": {"name": "arrays", "path": str(shaped_arrays[shape])}})
    if kind == "decoder" and name == "conv" or kind == "encoder" and name == "conv":
        options = {"channels": [8, 8, 8, 8]} if shape == (48, 40, 3) else {"channels": [8, 8]}
    else:
        options = wanted.get("options")
    recipe = validate(component_recipe(kind, name, options, "unconditional", partners), registry, name=name, source="t")

    def loss():
        experiment = assemble(recipe, registry, check_values=False)
        train = experiment.dataset.train
        x, c = experiment.condition.split(jnp.asarray(train.images[:4]), jnp.asarray(train.labels[:4]))
        check_shapes(experiment.model, x, c, 4)
        assert experiment.model.decoder(experiment.model.encode(x, c).mean(), c).shape[1:4] == shape
        return experiment.objective(experiment.model, Batch(x, c), jax.random.key(0))[0]

    assert jax.eval_shape(loss).shape == ()


def test_the_conv_decoder_crops_the_centre_to_the_exact_size():
    from flax import nnx

    from vae_zoo_plugins.base import conv

    decoder = conv.make_conv_decoder(3, None, (48, 40, 3, 2), nnx.Rngs(0), channels=(8, 8, 8, 8))
    # 48 and 40 halve to 3 and 2.5 -> 3: the 48x48 map loses 4 columns each side.
    assert decoder.start == (3, 3, 8) and decoder.offset == (0, 4)
    assert decoder(jnp.ones((2, 3)), None).shape == (2, 48, 40, 3, 2)
