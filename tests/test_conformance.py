"""The conformance suite (zoo.testing) over every registered component and every
recipe in registry.yaml: coverage grows with the zoo, as timm's every-model test.
No test here names a component: what a component needs it declares on its factory."""

import json

import pytest

from tests.conftest import REPO, first_party_registry
from zoo.core.recipes import RecipeBook
from zoo.testing import check_component, check_recipe, declared

REGISTRY = first_party_registry()
COMPONENTS = [(c.kind, c.name) for c in REGISTRY.list()]
VARIANTS = RecipeBook([REPO / "registry.yaml"]).names()


@pytest.fixture
def data_files(idx_dir, amat_dir):
    """The suite's own data files, by the kind a dataset declares (`factory.conformance["files"]`)."""
    return {"idx": idx_dir, "amat": amat_dir}


def file_options(component, data_files, cache_dir) -> dict:
    """Options pointing a dataset that reads files at the suite's own, prepared in a fresh cache."""
    files = declared(component).get("files")
    if files is None:
        return {}
    options = {"source_dir": str(data_files[files]), "cache_dir": str(cache_dir)}
    if "validation_size" in component.options():
        options["validation_size"] = 50
    return options


@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}:{n}" for k, n in COMPONENTS])
def test_component_conforms(registry, kind, name, data_files, tmp_path):
    options = file_options(registry.get(kind, name), data_files, tmp_path) or None
    passed = check_component(registry, kind, name, options)
    assert passed


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_conforms(registry, book, variant, data_files, tmp_path):
    # Each builds, has the right shapes, a finite loss equal with and without
    # jit, and trains a step. Variants reading data files read the suite's own.
    dataset = book.raw(variant)["dataset"]
    overrides = ["train.batch_size=4"]
    options = file_options(registry.get("dataset", dataset["name"]), data_files, tmp_path)
    if options:
        overrides.append("dataset=" + json.dumps({**dataset, **options}))
    check_recipe(book.resolve(variant, registry, overrides), registry)


def test_conformance_catches_a_broken_component(registry):
    import zoo
    from tests.test_contract import make_nan_decoder

    broken = zoo.Registry()
    for component in registry.list():
        broken.register(component.kind, component.name, component.factory, plugin=component.plugin)
    broken.register("decoder", "nan", make_nan_decoder, plugin="test")
    with pytest.raises(AssertionError, match="loss is not finite"):
        check_component(broken, "decoder", "nan")
