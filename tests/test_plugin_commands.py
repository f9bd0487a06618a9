"""Commands that plugins add to `zoo` (the `register_commands` hook), run in-process through `zoo.cli.main.main`."""

import re
import subprocess
import sys
import types

import pytest

import zoo
from tests.conftest import REPO, first_party_manager
from zoo.core import plugin_manager
from zoo.cli.main import main
from zoo.cli.main import build_parser
from zoo.cli.parser import subcommands

BUILT_IN = sorted(subcommands(build_parser()).choices)


def command_plugin(plugin_name: str, command: str, run, arguments=()) -> types.ModuleType:
    """A plugin module whose hook registers one command taking the given positional arguments."""
    module = types.ModuleType(plugin_name)

    @zoo.hookimpl
    def register_commands(register):
        parser = register(command, run, help=f"{command} of {plugin_name}")
        for argument in arguments:
            parser.add_argument(argument)

    module.register_commands = register_commands
    return module


@pytest.fixture
def install(monkeypatch):
    """Install test plugins beside the first-party ones, as `zoo` would find them."""

    def install(*modules):
        monkeypatch.setattr(plugin_manager, "_DEFAULT_MANAGER", first_party_manager(*modules))

    return install


def count_components(args, registry):
    """Prints how many components of a kind are registered."""
    print(f"{args.kind}: {len(registry.names(args.kind))}")


def test_a_plugins_command_gets_the_parsed_arguments_and_the_registry(install, registry, capsys):
    install(command_plugin("zoo_count", "count", count_components, ["kind"]))
    assert main(["count", "encoder"]) == 0
    assert capsys.readouterr().out == f"encoder: {len(registry.names('encoder'))}\n"


def test_a_plugins_command_sets_the_exit_status_and_its_errors_are_one_line(install, capsys):
    def fails(args, registry):
        raise zoo.ZooError("nothing to count here")

    install(command_plugin("zoo_three", "three", lambda args, registry: 3), command_plugin("zoo_fails", "fails", fails))
    assert main(["three"]) == 3
    assert main(["fails"]) == 2
    assert capsys.readouterr().err == "zoo: error: nothing to count here\n"


def test_a_plugins_command_parses_like_a_built_in_one(install, capsys):
    install(command_plugin("zoo_count", "count", count_components, ["kind"]))
    with pytest.raises(SystemExit) as exited:
        main(["count", "--help"])
    assert exited.value.code == 0 and "usage: zoo count [-h] kind" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["count"])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and error == (
        "zoo: error: count: the following arguments are required: kind (see zoo count --help)\n"
    )
    with pytest.raises(SystemExit) as exited:
        main(["cuont"])
    assert exited.value.code == 2 and "invalid choice: 'cuont'" in capsys.readouterr().err


def test_zoo_plugins_lists_each_plugins_commands(install, capsys):
    install(command_plugin("zoo_count", "count", count_components, ["kind"]))
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[lines.index("zoo_count  (built in)") + 1] == "    command:count"


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_command_named_as_a_built_in_one_is_refused_naming_the_plugin(install, capsys, name):
    install(command_plugin("zoo_greedy", name, count_components))
    assert main(["plugins"]) == 2
    assert capsys.readouterr().err == (
        f"zoo: error: plugin 'zoo_greedy' registers command {name!r}, which is a built-in "
        "zoo command; the plugin must choose another name\n"
    )


def test_two_plugins_with_one_command_name_are_both_named(install, capsys):
    install(
        command_plugin("zoo_first", "count", count_components), command_plugin("zoo_second", "count", count_components)
    )
    assert main(["count", "encoder"]) == 2
    assert capsys.readouterr().err == "zoo: error: plugins 'zoo_first' and 'zoo_second' both register command 'count'\n"


@pytest.mark.parametrize(
    ("name", "run", "problem"),
    [
        ("Count Things", count_components, "registers a command named 'Count Things'; a command name is lowercase"),
        ("count", "count_components", "registers command 'count' with 'count_components', which is not callable"),
    ],
)
def test_a_malformed_command_is_refused_naming_the_plugin(install, capsys, name, run, problem):
    install(command_plugin("zoo_sloppy", name, run))
    assert main(["list", "encoder"]) == 2
    assert capsys.readouterr().err.startswith(f"zoo: error: plugin 'zoo_sloppy' {problem}")


def test_a_hook_that_raises_is_named(install, capsys):
    module = types.ModuleType("zoo_exploding")

    @zoo.hookimpl
    def register_commands(register):
        raise RuntimeError("boom")

    module.register_commands = register_commands
    install(module)
    assert main(["plugins"]) == 2
    assert (
        capsys.readouterr().err
        == "zoo: error: plugin 'zoo_exploding' failed in register_commands: RuntimeError: boom\n"
    )


def test_help_loads_no_plugin():
    # Plugin modules import JAX at their top: help, the zoo's or a built-in command's, does without them.
    code = (
        "import sys, zoo.cli.main\n"
        "for argv in (['--help'], ['list', '--help'], ['--recipes', 'x.yaml', 'train', '--help']):\n"
        "    try:\n        zoo.cli.main.main(argv)\n    except SystemExit as exit:\n        assert exit.code == 0, argv\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'pluggy', 'plugins')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "tests")
    assert out.stdout.strip().endswith("[]")
    assert "`zoo plugins` lists them" in out.stdout


def test_the_documented_command_plugin_works(install, registry, capsys):
    doc = (REPO / "docs" / "plugins.md").read_text()
    code = re.search(r"<!-- command example -->\n```python\n(.*?)```", doc, flags=re.S).group(1)
    module = types.ModuleType("zoo_params")
    exec(compile(code, "docs/plugins.md:register_commands", "exec"), module.__dict__)
    install(module)
    assert main(["params", "vae_mlp", "--set", "encoder.hidden=[16]"]) == 0
    counts = dict(line.split() for line in capsys.readouterr().out.splitlines())
    model = zoo.build("vae_mlp", ["encoder.hidden=[16]"], registry=registry)
    assert int(counts["encoder"].replace(",", "")) == module.count_parameters(model.encoder)
    assert module.count_parameters(model.encoder) == 64 * 16 + 16 + 2 * (
        16 * model.latent_dim + model.latent_dim
    )  # 8x8 digits
    assert (
        int(counts["total"].replace(",", ""))
        == module.count_parameters(model)
        > int(counts["decoder"].replace(",", ""))
    )
