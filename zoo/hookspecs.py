"""The plugin hooks (pluggy), in the style of llm and datasette.

Every hook is documented here; a meta-test in `tests/test_registry.py` checks
that each hook in this module is listed in docs/plugins.md and implemented by a
test.
"""

import pluggy

PROJECT = "vae_zoo"
ENTRY_POINT_GROUP = "vae_zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_components(register):
    """Register components by calling `register(kind, name, factory)`.

    `kind` is one of `zoo.KINDS`; `factory` builds the component from the
    recipe's keyword arguments and the context arguments it names.
    """
