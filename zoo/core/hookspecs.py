"""The plugin hooks (pluggy), in the style of llm and datasette.

Every hook is documented here; a meta-test in `tests/test_registry.py` checks
that each hook in this module is listed in docs/plugins.md and implemented by a
test.
"""

import argparse
from typing import Callable

import pluggy

PROJECT = "vae_zoo"
ENTRY_POINT_GROUP = "vae_zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_components(register: Callable[..., None]) -> None:
    """Register components by calling `register(kind, name, factory)`.

    `kind` is one of `zoo.KINDS`; `factory` builds the component from the
    recipe's keyword arguments and the context arguments it names.
    """


@hookspec
def register_commands(register: Callable[..., argparse.ArgumentParser]) -> None:
    """Add `zoo` subcommands by calling `register(name, run, help=...)`, which returns the
    command's `argparse.ArgumentParser` for its arguments.

    `run(args, registry)` is called with the parsed `argparse.Namespace` and the zoo's
    `Registry`; it returns None (exit status 0) or an exit status, and raises `zoo.ZooError`
    for an error the user can act on (printed as one `zoo: error:` line, status 2). A name
    that is a built-in command, or another plugin's, is refused naming the plugin.
    """
