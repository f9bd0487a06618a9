"""The registry and the plugin manager: names, duplicates, unknowns, broken plugins."""

import importlib.metadata
import types

import pytest

import zoo
from zoo.core import plugin_manager
from tests.conftest import first_party_registry, plugin_of


def test_first_party_components_are_registered(registry):
    assert registry.names("encoder") == [
        "conv",
        "hierarchical_mlp",
        "iaf_mlp",
        "ladder_mlp",
        "mlp",
        "planar_mlp",
        "vmf_mlp",
        "vq_mlp",
        "wrapped_normal_mlp",
    ]
    assert registry.names("decoder") == ["conv", "hierarchical_mlp", "mlp"]
    assert registry.names("prior") == [
        "conditional",
        "fitted_codebook",
        "fitted_gmm",
        "gmm_fitted",
        "hierarchical",
        "ladder",
        "maf_fitted",
        "mixture",
        "pixelcnn_codes",
        "spherical_uniform",
        "standard_normal",
        "two_stage",
        "uniform_codebook",
        "vampprior",
        "wrapped_normal",
    ]
    assert registry.names("likelihood") == [
        "bernoulli",
        "continuous_bernoulli",
        "discretized_logistic_mixture",
        "gaussian_diagonal",
        "gaussian_fixed",
        "gaussian_identity",
    ]
    assert registry.names("objective") == [
        "aae",
        "annealed_vae",
        "beta_elbo",
        "beta_tc",
        "ciwae",
        "dip_vae_i",
        "dip_vae_ii",
        "elbo",
        "factor_vae",
        "gsnn",
        "hamiltonian_elbo",
        "hybrid",
        "info_vae",
        "iwae",
        "miwae",
        "piwae",
        "rae_gp",
        "rae_l2",
        "vae_gan",
        "vq",
        "wae_mmd",
    ]
    assert registry.names("condition") == ["onehot_label", "visible_quadrants"]
    assert {"digits", "images", "arrays", "tfds", "color_dsprites"} <= set(registry.names("dataset"))


def test_duplicate_name_names_both_plugins():
    first = plugin_of("first_plugin", ("encoder", "resnet", lambda: None))
    second = plugin_of("second_plugin", ("encoder", "resnet", lambda: None))
    with pytest.raises(
        zoo.DuplicateComponentError,
        match="encoder 'resnet' is registered twice: by plugin 'first_plugin' and by plugin 'second_plugin'",
    ):
        first_party_registry(first, second)


def test_duplicate_of_a_first_party_name_fails_at_start_up():
    clash = plugin_of("clash", ("encoder", "mlp", lambda: None))
    with pytest.raises(zoo.DuplicateComponentError, match="'mlp'.*'clash'"):
        first_party_registry(clash)


def test_unknown_name_lists_known_names_and_closest(registry):
    with pytest.raises(zoo.UnknownComponentError) as info:
        registry.get("encoder", "mpl")
    assert (
        str(info.value)
        == "unknown encoder 'mpl' (did you mean 'mlp'?); known: conv, hierarchical_mlp, iaf_mlp, ladder_mlp, mlp, planar_mlp, vmf_mlp, vq_mlp, "
        "wrapped_normal_mlp"
    )


def test_unknown_kind_is_refused(registry):
    with pytest.raises(zoo.UnknownComponentError, match="unknown kind 'encodr' \\(did you mean 'encoder'\\?\\)"):
        registry.list("encodr")
    bad = plugin_of("bad_kind", ("encodr", "x", lambda: None))
    with pytest.raises(zoo.ZooError, match="plugin 'bad_kind' registers 'x' under unknown kind 'encodr'"):
        first_party_registry(bad)


def test_list_filters_by_kind_and_glob(registry):
    assert [c.name for c in registry.list("likelihood", "gaussian_*")] == [
        "gaussian_diagonal",
        "gaussian_fixed",
        "gaussian_identity",
    ]
    assert {c.kind for c in registry.list(None, "mlp")} == {"encoder", "decoder"}


def test_build_passes_only_the_context_a_factory_asks_for(registry):
    likelihood = registry.build("likelihood", {"name": "gaussian_fixed", "scale": 0.5}, x_shape=(3,), rngs=None)
    assert likelihood.scale == 0.5 and likelihood.params_per_dim == 1


def test_component_summary_and_options(registry):
    component = registry.get("encoder", "mlp")
    assert component.plugin == "vae_zoo_plugins.base.mlp"  # the module name when registered directly
    assert component.summary.startswith("MLP encoder")
    assert list(component.options()) == ["hidden", "activation", "gated", "init", "log_variance_bounds"]


def test_broken_plugin_names_plugin_and_entry_point(monkeypatch):
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_module_xyz", group="vae_zoo")

    def fake_entry_points(group=None, **kwargs):
        assert group == "vae_zoo"
        return [broken]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    with pytest.raises(zoo.PluginLoadError) as info:
        zoo.make_plugin_manager()
    message = str(info.value)
    assert "plugin 'broken'" in message and "broken = no_such_module_xyz" in message
    assert "ModuleNotFoundError" in message


def test_hook_that_raises_is_named():
    module = types.ModuleType("exploding")

    @zoo.hookimpl
    def register_components(register):
        raise RuntimeError("boom")

    module.register_components = register_components
    with pytest.raises(
        zoo.PluginLoadError, match="plugin 'exploding' failed in register_components: RuntimeError: boom"
    ):
        first_party_registry(module)


def test_default_registry_in_tests_is_the_explicit_one(registry):
    # conftest points default_registry() at the first-party registry: installed
    # entry points of this machine never reach in-process tests.
    assert plugin_manager.default_registry() is registry


def test_every_hook_is_documented_and_tested():
    from zoo.core import hookspecs

    from tests.conftest import REPO

    hooks = [name for name, value in vars(hookspecs).items() if hasattr(value, f"{hookspecs.PROJECT}_spec")]
    assert "register_components" in hooks  # every hook is found by its marker; none listed here by hand
    docs = (REPO / "docs" / "plugins.md").read_text()
    tests = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py") if p.name != "test_registry.py")
    for hook in hooks:
        assert f"### `{hook}(" in docs, f"hook {hook} is not documented in docs/plugins.md"
        assert f"def {hook}(" in tests, f"no test outside this file implements hook {hook}"
