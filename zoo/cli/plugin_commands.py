"""The `zoo` subcommands plugins add through the `register_commands` hook.

Plugin modules import JAX at their top, so they are loaded only when a command runs:
`zoo --help` and `zoo BUILT-IN --help` list the built-in commands alone (their epilog says
`zoo plugins` lists the others), while `zoo plugins`, a plugin's command and every built-in
command that runs load them, so a name clash is refused whatever the user runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any, Callable, Optional

import pluggy

from zoo.cli.parser import subcommands
from zoo.errors import PluginLoadError, ZooError

COMMAND_NAME = re.compile(r"[a-z][a-z0-9-]*")  # what a shell user types without quoting


@dataclasses.dataclass(frozen=True)
class PluginCommand:
    """A subcommand a plugin registered: what runs it, and the plugin to name in messages."""

    name: str
    plugin: str
    run: Callable[[argparse.Namespace, Any], Optional[int]]
    help: str = ""


def add_plugin_commands(parser: argparse.ArgumentParser, manager: pluggy.PluginManager) -> dict[str, PluginCommand]:
    """Call every plugin's `register_commands` with a `register` bound to that plugin, adding
    each command to `parser`; a name that is taken is refused naming the plugin."""
    commands = subcommands(parser)
    built_in = set(commands.choices)
    found: dict[str, PluginCommand] = {}
    for impl in manager.hook.register_commands.get_hookimpls():
        plugin = impl.plugin_name

        def register(
            name: str,
            run: Callable[..., Optional[int]],
            *,
            help: str = "",
            description: Optional[str] = None,
            _plugin: str = plugin,
        ) -> argparse.ArgumentParser:
            check_command(_plugin, name, run, built_in, found)
            found[name] = PluginCommand(name, _plugin, run, help)
            return commands.add_parser(name, help=f"{help} [plugin {_plugin}]".strip(), description=description or help)

        try:
            impl.function(register=register)
        except ZooError:
            raise
        except Exception as exc:  # a plugin's bug becomes one line naming it
            raise PluginLoadError(
                f"plugin {plugin!r} failed in register_commands: {type(exc).__name__}: {exc}"
            ) from exc
    return found


def check_command(plugin: str, name: Any, run: Any, built_in: set[str], found: dict[str, PluginCommand]) -> None:
    """Refuse a command name that is not a plain word or is taken, and a `run` that is not callable."""
    if not isinstance(name, str) or not COMMAND_NAME.fullmatch(name):
        raise PluginLoadError(
            f"plugin {plugin!r} registers a command named {name!r}; "
            "a command name is lowercase letters, digits and '-', starting with a letter"
        )
    if name in built_in:
        raise PluginLoadError(
            f"plugin {plugin!r} registers command {name!r}, which is a built-in zoo command; "
            "the plugin must choose another name"
        )
    if name in found:
        raise PluginLoadError(f"plugins {found[name].plugin!r} and {plugin!r} both register command {name!r}")
    if not callable(run):
        raise PluginLoadError(
            f"plugin {plugin!r} registers command {name!r} with {run!r}, which is not callable; "
            "expected run(args, registry)"
        )


def list_plugin_commands(parser: argparse.ArgumentParser, manager: pluggy.PluginManager) -> list[PluginCommand]:
    """Every plugin's commands, as `zoo plugins` lists them: added to `parser`, a fresh parser of
    the built-in commands (zoo.cli.main builds it), so a clash is refused as when one runs."""
    return list(add_plugin_commands(parser, manager).values())
