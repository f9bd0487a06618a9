"""A plugin's own fault against the user's mistake (issue 30, part 4): an exception inside a
factory names the plugin and its package, with the traceback under --debug or ZOO_DEBUG=1, while
options the factory does not take and its own refusals stay the user's one line; and a run
records its plugin packages, so loading it without one says what to install."""

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest

import zoo
from tests.conftest import REPO, first_party_registry, plugin_of
from tests.plugin_packages import install_on_path
from vae_zoo_plugins.base import likelihoods
from zoo.cli.main import main
from zoo.core import plugin_manager
from zoo.core.registry import build_component
from zoo.training import runs


def make_broken(scale: float = 1.0):
    """A likelihood factory with a bug of its own, and a refusal of its own."""
    if scale < 0:
        raise ValueError(f"scale must be at least 0, got {scale}")
    return None + scale  # the bug: a TypeError raised inside the plugin


BROKEN = plugin_of("zoo_broken", ("likelihood", "broken", make_broken))
PACKAGE = ("zoo-broken", "0.2.0")


@pytest.fixture
def with_broken(monkeypatch):
    """The first-party registry with the broken plugin, installed (to the zoo) from its package."""
    monkeypatch.setitem(plugin_manager._PACKAGES, "zoo_broken", PACKAGE)
    registry = first_party_registry(BROKEN)
    monkeypatch.setattr(plugin_manager, "_DEFAULT", registry)
    return registry


def run_zoo(capsys, *args):
    status = main(list(map(str, args)))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_fault_inside_a_factory_is_the_plugins_named_with_its_package(with_broken):
    with pytest.raises(zoo.PluginFaultError) as fault:
        zoo.build("vae_mlp", {"likelihood": {"name": "broken"}}, registry=with_broken)
    message = str(fault.value)
    assert message.startswith(
        "likelihood 'broken': its factory in plugin 'zoo_broken' (package zoo-broken 0.2.0) failed with "
        "TypeError: unsupported operand type(s) for +: 'NoneType' and 'float'; this is a fault of the plugin"
    ), message
    assert isinstance(fault.value.__cause__, TypeError)  # the plugin's own traceback, for Python callers


def test_the_users_mistakes_stay_the_users(with_broken):
    with pytest.raises(zoo.ModelBuildError, match="likelihood 'broken' could not be built: scale must be at least 0"):
        zoo.build("vae_mlp", {"likelihood": {"name": "broken", "scale": -1.0}}, registry=with_broken)
    with pytest.raises(zoo.ModelBuildError, match="could not be built: got an unexpected keyword argument 'colour'"):
        build_component(with_broken, "likelihood", {"name": "broken", "colour": "red"}, zoo.ModelBuildError)
    with pytest.raises(zoo.RecipeError, match="unknown option of likelihood 'broken'; options: scale"):
        zoo.build("vae_mlp", {"likelihood": {"name": "broken", "colour": "red"}}, registry=with_broken)


TRAIN_BROKEN = ("train", "vae_mlp", "--set", "likelihood={name: broken}", "--quiet")


def test_the_cli_says_a_plugin_fault_in_one_line_without_a_traceback(with_broken, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    status, _, err = run_zoo(capsys, *TRAIN_BROKEN, "--workdir", tmp_path / "run")
    lines = err.splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("zoo: error: likelihood 'broken': its factory in plugin 'zoo_broken' (package ")
    assert "this is a fault of the plugin, not of the recipe" in lines[0]
    status, _, err = run_zoo(capsys, *TRAIN_BROKEN[:3], "likelihood={name: broken, scale: -1}", "--quiet")
    assert status == 2 and err.splitlines() == [
        "zoo: error: likelihood 'broken' could not be built: scale must be at least 0, got -1.0"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("ask", ["--debug after the command", "--debug before it", "ZOO_DEBUG=1"])
def test_debug_prints_the_plugins_traceback_above_the_line(with_broken, tmp_path, capsys, monkeypatch, ask):
    args = [*TRAIN_BROKEN, "--workdir", tmp_path / "run"]
    if ask == "ZOO_DEBUG=1":
        monkeypatch.setenv("ZOO_DEBUG", "1")
    else:
        monkeypatch.delenv("ZOO_DEBUG", raising=False)
        args = [*args, "--debug"] if ask.endswith("after the command") else ["--debug", *args]
    status, _, err = run_zoo(capsys, *args)
    assert status == 2 and err.startswith("Traceback (most recent call last):"), err
    assert "return None + scale  # the bug" in err and "TypeError: unsupported operand" in err
    assert err.splitlines()[-1].startswith("zoo: error: likelihood 'broken': its factory in plugin 'zoo_broken'")


@pytest.mark.slow  # a `zoo` subprocess builds the model
def test_a_plugin_fault_names_the_package_of_a_real_entry_point(tmp_path):
    """Through an entry point, in a `zoo` process: the package is the distribution's name and version."""
    install_on_path(
        tmp_path / "site",
        textwrap.dedent("""
            [project]
            name = "zoo-broken"
            version = "0.2.0"
            [project.entry-points.vae_zoo]
            broken = "zoo_broken"
        """),
        {
            "zoo_broken.py": textwrap.dedent("""
                import zoo

                def make_broken(scale: float = 1.0):
                    \"\"\"A likelihood with a bug.\"\"\"
                    return None + scale

                @zoo.hookimpl
                def register_components(register):
                    register("likelihood", "broken", make_broken)
            """)
        },
    )
    result = subprocess.run(
        [sys.executable, "-m", "zoo.cli.main", *TRAIN_BROKEN, "--workdir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site"), "ZOO_DEBUG": ""},
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "its factory in plugin 'broken' (package zoo-broken 0.2.0) failed with TypeError" in result.stderr


STUDENT = plugin_of("zoo_student", ("likelihood", "student", likelihoods.make_gaussian_fixed))


def test_versions_json_records_each_plugin_package_and_a_run_without_one_says_what_to_install(
    tmp_path, book, registry, monkeypatch
):
    monkeypatch.setitem(plugin_manager._PACKAGES, "zoo_student", ("zoo-student", "1.4.2"))
    with_student = first_party_registry(STUDENT)
    run = tmp_path / "run"
    recipe = book.resolve("vae_mlp", with_student, ["likelihood={name: student}"])
    runs.prepare(run, recipe, resume=False, registry=with_student)  # what training writes first
    used = json.loads((run / "versions.json").read_text())["plugins"]
    version = importlib.metadata.version("vae-zoo")
    assert used["likelihood student"] == {"plugin": "zoo_student", "package": "zoo-student", "version": "1.4.2"}
    assert used["encoder mlp"] == {"plugin": "vae_zoo_plugins.base.mlp", "package": "vae-zoo", "version": version}
    assert set(used) == {f"{kind} {name}" for kind, name in [
        ("dataset", "digits"), ("encoder", "mlp"), ("decoder", "mlp"), ("prior", "standard_normal"),
        ("likelihood", "student"), ("objective", "elbo"),
    ]}  # fmt: skip
    with pytest.raises(zoo.RunDirectoryError, match="holds no checkpoint yet"):
        zoo.load(run, registry=with_student)  # with its plugin installed the recipe reads
    with pytest.raises(zoo.UnknownComponentError) as missing:
        zoo.load(run, registry=registry)  # the first-party registry: no zoo-student installed
    assert str(missing.value).startswith(
        f"{run} was trained with likelihood 'student' of plugin 'zoo_student' from the package zoo-student 1.4.2, "
        "which is not installed here: pip install 'zoo-student==1.4.2' ("
    ), missing.value
    assert "unknown likelihood 'student'" in str(missing.value)


def test_the_cli_says_which_package_to_install(tmp_path, book, registry, capsys, monkeypatch):
    monkeypatch.setitem(plugin_manager._PACKAGES, "zoo_student", ("zoo-student", "1.4.2"))
    with_student = first_party_registry(STUDENT)
    recipe = book.resolve("vae_mlp", with_student, ["likelihood={name: student}"])
    runs.prepare(tmp_path / "run", recipe, resume=False, registry=with_student)
    status, _, err = run_zoo(capsys, "sample", tmp_path / "run")
    assert status == 2 and len(err.splitlines()) == 1 and "pip install 'zoo-student==1.4.2'" in err, err
