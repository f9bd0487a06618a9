"""Finding plugins (entry points, group `vae_zoo`) and filling a registry from them."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import types
from typing import Any, Callable, Iterable, Optional

import pluggy

from zoo.core import hookspecs
from zoo.errors import PluginLoadError, ZooError
from zoo.core.registry import Registry

# The zoo's own default plugin: the objectives are mathematics, not networks,
# and live in the core (llm ships its default models the same way).
DEFAULT_PLUGINS = ("zoo.core.objectives",)


def make_plugin_manager(
    *, entry_points: bool = True, plugins: Iterable[types.ModuleType | object] = ()
) -> pluggy.PluginManager:
    """A plugin manager with the zoo's hookspecs, the default plugins and, optionally,
    every installed entry point of group `vae_zoo`.

    Tests pass `entry_points=False` and the plugins they want, so the machine's
    installed plugins never leak into them.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        manager.register(importlib.import_module(module_name), name=module_name)
    if entry_points:
        load_entry_points(manager)
    for plugin in plugins:
        manager.register(plugin, name=getattr(plugin, "__name__", None))
    return manager


def load_entry_points(manager: pluggy.PluginManager) -> None:
    """Import every `vae_zoo` entry point; a broken one is named with its entry point."""
    for entry_point in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        dist = entry_point.dist.name if entry_point.dist else "unknown distribution"
        if manager.get_plugin(entry_point.name) is not None:
            if _DISTRIBUTIONS.get(entry_point.name, "").split(" ")[0] == dist:
                continue  # the same distribution seen twice on sys.path
            raise PluginLoadError(
                f"two plugins are named {entry_point.name!r}: one from {plugin_source(entry_point.name)} "
                f"and one from {dist} (entry point '{entry_point.name} = {entry_point.value}')"
            )
        try:
            module = entry_point.load()
        except Exception as exc:  # any import failure becomes one clear message
            raise PluginLoadError(
                f"plugin {entry_point.name!r} (entry point '{entry_point.name} = {entry_point.value}' "
                f"of {dist}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        manager.register(module, name=entry_point.name)
        _DISTRIBUTIONS[entry_point.name] = f"{dist} {entry_point.dist.version}" if entry_point.dist else dist
        if entry_point.dist:
            _PACKAGES[entry_point.name] = (entry_point.dist.name, entry_point.dist.version)


_DISTRIBUTIONS: dict[str, str] = {}
_PACKAGES: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version), from its entry point


def plugin_source(plugin_name: str) -> str:
    """Where a plugin came from: its distribution and version, or 'built in'."""
    return _DISTRIBUTIONS.get(plugin_name, "built in")


def plugin_package(plugin_name: str) -> Optional[tuple[str, str]]:
    """The installed distribution a plugin comes from, (name, version): its entry point's, or, for a
    plugin registered as a module (the default plugins, tests), the distribution holding that
    module's top-level package; None when no installed distribution holds it."""
    if plugin_name in _PACKAGES:
        return _PACKAGES[plugin_name]
    holders = _module_distributions().get(plugin_name.split(".")[0])
    if not holders:
        return None
    try:
        return holders[0], importlib.metadata.version(holders[0])
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    """Top-level module -> the distributions that install it (read once: it scans every installed one)."""
    return dict(importlib.metadata.packages_distributions())


def fill_registry(manager: pluggy.PluginManager) -> Registry:
    """Call every plugin's `register_components` with a `register` bound to that plugin,
    so a duplicate can name both plugins."""
    registry = Registry(package_of=plugin_package)
    for impl in manager.hook.register_components.get_hookimpls():

        def register(kind: str, name: str, factory: Callable[..., Any], _plugin: str = impl.plugin_name) -> None:
            registry.register(kind, name, factory, plugin=_plugin)

        try:
            impl.function(register=register)
        except ZooError:
            raise
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {impl.plugin_name!r} failed in register_components: {type(exc).__name__}: {exc}"
            ) from exc
    return registry


_DEFAULT: Registry | None = None
_DEFAULT_MANAGER: pluggy.PluginManager | None = None


def default_manager() -> pluggy.PluginManager:
    """The plugin manager of every installed plugin, made once per process (the commands
    plugins add to `zoo` are read from it, the default registry filled from it)."""
    global _DEFAULT_MANAGER
    if _DEFAULT_MANAGER is None:
        _DEFAULT_MANAGER = make_plugin_manager()
    return _DEFAULT_MANAGER


def default_registry() -> Registry:
    """The registry of every installed plugin, built once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = fill_registry(default_manager())
    return _DEFAULT
