"""The registry: components by (kind, name), as in timm's `list_models`.

A component is a factory; building one pops `name` from its spec, looks the
factory up and passes the remaining keys as keyword arguments, together with
the context arguments (shapes, rngs, ...) that the factory asks for.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from typing import Any, Callable, Iterable, Mapping, Optional

from zoo.errors import DuplicateComponentError, PluginFaultError, UnknownComponentError, ZooError, first_line

KINDS = ("encoder", "decoder", "prior", "likelihood", "objective", "dataset", "condition")

# What the zoo hands to a factory of each kind besides the recipe's keys; a
# factory receives only the context arguments it names in its signature.
CONTEXT_ARGUMENTS = {
    "encoder": ("x_shape", "c_shape", "latent_dim", "latent_sizes", "rngs"),
    "decoder": ("latent_dim", "latent_sizes", "c_shape", "output_shape", "rngs"),
    "prior": ("latent_dim", "latent_sizes", "c_shape", "encoder", "x_shape", "rngs"),
    "likelihood": (),
    # An objective with networks of its own (a discriminator) builds them from the latent and data
    # shapes and rngs; one whose options must fit the batch is given its size.
    "objective": ("steps_per_epoch", "total_steps", "batch_size", "latent_dim", "x_shape", "c_shape", "rngs"),
    "dataset": ("data_dir",),
    "condition": ("image_shape", "num_classes"),
}


@dataclasses.dataclass(frozen=True)
class Component:
    """One registered factory and the plugin that registered it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str

    @property
    def summary(self) -> str:
        """The first line of the factory's docstring."""
        doc = inspect.getdoc(self.factory) or ""
        return doc.splitlines()[0] if doc else ""

    def options(self) -> dict[str, inspect.Parameter]:
        """The keyword arguments a recipe may set (context arguments excluded)."""
        context = CONTEXT_ARGUMENTS[self.kind]
        params = inspect.signature(self.factory).parameters
        return {n: p for n, p in params.items() if n not in context and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def closest_match(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest known name, or ''."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown_name_message(what: str, name: str, known: Iterable[str]) -> str:
    """The one message for a name that is not registered: known names and the closest."""
    known = sorted(known)
    listing = ", ".join(known) if known else "none"
    return f"unknown {what} {name!r}{closest_match(name, known)}; known: {listing}"


class Registry:
    """Components by (kind, name); duplicates fail at registration.

    `package_of(plugin)` says which installed distribution a plugin comes from, as
    (name, version), or None; the plugin manager passes one that reads the entry points."""

    def __init__(self, package_of: Optional[Callable[[str], Optional[tuple[str, str]]]] = None) -> None:
        self._components: dict[tuple[str, str], Component] = {}
        self.package_of: Callable[[str], Optional[tuple[str, str]]] = package_of or (lambda plugin: None)

    def register(self, kind: str, name: str, factory: Callable[..., Any], *, plugin: str = "<direct>") -> None:
        """Add `factory` as component `name` of `kind`."""
        if kind not in KINDS:
            raise ZooError(f"plugin {plugin!r} registers {name!r} under " + unknown_name_message("kind", kind, KINDS))
        if not isinstance(name, str) or not name:
            raise ZooError(f"plugin {plugin!r} registers a {kind} with an empty or non-string name {name!r}")
        if not callable(factory):
            raise ZooError(f"plugin {plugin!r} registers {kind} {name!r} with a factory that is not callable")
        existing = self._components.get((kind, name))
        if existing is not None:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by plugin {existing.plugin!r} and by plugin {plugin!r}"
            )
        self._components[(kind, name)] = Component(kind, name, factory, plugin)

    def get(self, kind: str, name: str) -> Component:
        """The component, or an error listing the known names of that kind."""
        if kind not in KINDS:
            raise UnknownComponentError(unknown_name_message("kind", kind, KINDS))
        try:
            return self._components[(kind, name)]
        except KeyError:
            raise UnknownComponentError(unknown_name_message(kind, str(name), self.names(kind))) from None

    def names(self, kind: str) -> list[str]:
        """Sorted names registered under `kind`."""
        return sorted(n for k, n in self._components if k == kind)

    def list(self, kind: str | None = None, pattern: str = "*") -> list[Component]:
        """Components of `kind` (all kinds when None) whose name matches the glob `pattern`."""
        if kind is not None and kind not in KINDS:
            raise UnknownComponentError(unknown_name_message("kind", kind, KINDS))
        found = [
            c
            for (k, n), c in self._components.items()
            if (kind is None or k == kind) and fnmatch.fnmatchcase(n, pattern)
        ]
        return sorted(found, key=lambda c: (KINDS.index(c.kind), c.name))

    def build(self, kind: str, spec: Mapping[str, Any], **context: Any) -> Any:
        """Build a component from its spec `{name: ..., **kwargs}` and the context.

        >>> registry.build("likelihood", {"name": "bernoulli"})  # doctest: +SKIP
        """
        component, arguments = self.arguments(kind, spec, context)
        return component.factory(**arguments)

    def arguments(
        self, kind: str, spec: Mapping[str, Any], context: Mapping[str, Any]
    ) -> tuple[Component, dict[str, Any]]:
        """The component and the keyword arguments its factory gets: the spec's keys and the context
        arguments it names. A TypeError when they do not fit its signature (an option it does not
        take, one it needs and was not given): the caller's mistake, found before the factory runs."""
        kwargs = dict(spec)
        component = self.get(kind, kwargs.pop("name"))
        signature = inspect.signature(component.factory)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        wanted = {k: v for k, v in context.items() if takes_any or k in signature.parameters}
        signature.bind(**wanted, **kwargs)
        return component, {**wanted, **kwargs}

    def describe_plugin(self, plugin: str) -> str:
        """The plugin named with its package, "plugin 'NAME' (package DIST VERSION)" (no package when none is known)."""
        package = self.package_of(plugin)
        return f"plugin {plugin!r}" + (f" (package {package[0]} {package[1]})" if package else "")

    def __len__(self) -> int:
        return len(self._components)


# What a factory raises to refuse what it was given (bad sizes, shapes, files), as
# docs/plugins.md asks (besides zoo.ModelBuildError and other ZooErrors): the user's to fix.
FACTORY_REFUSALS = (ValueError, OSError)


def build_component(
    registry: Registry, kind: str, spec: Mapping[str, Any], error: type[ZooError], **context: Any
) -> Any:
    """`registry.build`, with a factory's refusal (or options its signature does not take) turned
    into `error` naming the component, and any other exception raised inside the factory (a
    TypeError of its own arithmetic, ...) into a PluginFaultError naming the plugin and its
    package: the plugin's bug, not the user's recipe, with its traceback under --debug."""
    try:
        component, arguments = registry.arguments(kind, spec, context)
    except TypeError as exc:
        raise error(f"{kind} {spec['name']!r} could not be built: {exc}") from exc
    try:
        return component.factory(**arguments)
    except ZooError:
        raise
    except FACTORY_REFUSALS as exc:
        raise error(f"{kind} {spec['name']!r} could not be built: {exc}") from exc
    except Exception as exc:
        raise PluginFaultError(
            f"{kind} {spec['name']!r}: its factory in {registry.describe_plugin(component.plugin)} failed "
            f"with {first_line(exc, 200)}; this is a fault of the plugin, not of the recipe: report it to the "
            "package's authors (zoo --debug ..., or ZOO_DEBUG=1, prints the traceback)"
        ) from exc
