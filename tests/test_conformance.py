"""The conformance suite (zoo.testing) over every registered component and every
recipe in registry.yaml: coverage grows with the zoo, as timm's every-model test.
No test here names a component: what a component needs it declares on its factory.

Two tiers. The full checks (`check_component`, `check_recipe`: densities, jit against eager,
gradients, one update from the training step's own loss and gradients, compiled) are marked slow.
The fast tier builds the same components and variants: each component, in the settings
`check_component` tries, at its tiny shapes, and runs one forward pass op by op (the model's
contract, checked as it is built, the shapes of every distribution and a finite loss on real
examples; the small programs of single operations are compiled once and shared by every test,
where each full check compiles its own); each variant at its own shapes, built and run abstractly
(`jax.eval_shape`: the contract and every shape down to the loss, no compilation, no values). A
broken component fails both tiers."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import REPO, first_party_registry
from zoo.core.contract import ContractError
from zoo.errors import ModelBuildError
from zoo.core.assembly import assemble
from zoo.core.interfaces import Batch
from zoo.core.recipes import RecipeBook, deep_merge, validate
from zoo.testing import PARTNERS, SETTINGS, check_component, check_shapes, component_recipe, declared

REGISTRY = first_party_registry()
COMPONENTS = [(c.kind, c.name) for c in REGISTRY.list()]
VARIANTS = RecipeBook([REPO / "registry.yaml"]).names()
BATCH = 4


def file_options(component, data_files, cache_dir) -> dict:
    """Options pointing a dataset that reads files at the suite's own (the option its factory
    declares as `path_option`, `source_dir` by default), prepared in a fresh cache."""
    wanted = declared(component)
    files = wanted.get("files")
    if files is None:
        return {}
    options = {**wanted.get("options", {}), wanted.get("path_option", "source_dir"): str(data_files[files])}
    if "cache_dir" in component.options():
        options["cache_dir"] = str(cache_dir)
    if "validation_size" in component.options():
        options["validation_size"] = 50
    return options


def variant_recipe(registry, book, variant: str, data_files, cache_dir) -> dict:
    """The variant resolved at batch 4, a dataset that reads files reading the suite's own."""
    dataset = book.raw(variant)["dataset"]
    overrides = [f"train.batch_size={BATCH}"]
    options = file_options(registry.get("dataset", dataset["name"]), data_files, cache_dir)
    if options:
        overrides.append("dataset=" + json.dumps({**dataset, **options}))
    return book.resolve(variant, registry, overrides)


def forward_pass(recipe, registry) -> None:
    """The fast tier's check: the recipe builds (the model's contract is checked on the way, by
    abstract tracing), every distribution has its shapes (again after `fit_after_training`), and
    the objective's loss on a batch of real examples is finite, all op by op."""
    experiment = assemble(recipe, registry, check_values=False)  # the finite loss below checks the values
    model, condition = experiment.model, experiment.condition
    train = experiment.dataset.train
    x, c = condition.split(jnp.asarray(train.images[:BATCH]), jnp.asarray(train.labels[:BATCH]))
    check_shapes(model, x, c, BATCH)
    fit = getattr(model.prior, "fit_after_training", None)
    if fit is not None:
        fit(model, x, c)
        check_shapes(model, x, c, BATCH)
    loss = float(experiment.objective(model, Batch(x, c), jax.random.key(0))[0])
    assert np.isfinite(loss), f"{recipe['variant']}: loss is not finite ({loss})"


@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}:{n}" for k, n in COMPONENTS])
def test_component_builds_and_runs_a_forward_pass(registry, kind, name, data_files, tmp_path):
    """Fast: in every setting `check_component` tries, the same recipe; it must work in one, and a
    broken contract fails in any."""
    component = registry.get(kind, name)
    wanted = declared(component)
    partners = deep_merge(PARTNERS, wanted.get("partners", {}))
    options = file_options(component, data_files, tmp_path) or wanted.get("options")
    passed, refused = [], []
    for setting in SETTINGS:
        raw = component_recipe(kind, name, options, setting, partners)
        recipe = validate(raw, registry, name=f"{kind}:{name}", source="zoo.testing")
        try:
            forward_pass(recipe, registry)
        except ContractError as exc:
            raise AssertionError(f"{kind} {name!r} ({setting}): {exc}") from exc
        except ModelBuildError as exc:
            refused.append(f"{setting}: {exc}")
            continue
        passed.append(setting)
    assert passed, f"{kind} {name!r} works in no setting: " + "; ".join(refused)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "name"), COMPONENTS, ids=[f"{k}:{n}" for k, n in COMPONENTS])
def test_component_conforms(registry, kind, name, data_files, tmp_path):
    options = file_options(registry.get(kind, name), data_files, tmp_path) or None
    passed = check_component(registry, kind, name, options)
    assert passed


def test_conformance_catches_a_broken_component(registry):
    import zoo
    from tests.test_contract import make_nan_decoder

    broken = zoo.Registry()
    for component in registry.list():
        broken.register(component.kind, component.name, component.factory, plugin=component.plugin)
    broken.register("decoder", "nan", make_nan_decoder, plugin="test")
    with pytest.raises(AssertionError, match="loss is not finite"):
        check_component(broken, "decoder", "nan")
