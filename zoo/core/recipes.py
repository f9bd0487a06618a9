"""Recipes: named variants in registry.yaml, each a set of component specs.

A recipe may inherit from another with `base:`; a user's own recipe file adds
or overrides variants; `--set key.path=value` overrides one field. Every error
names the file, the recipe and the key path.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import AbstractSet, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import yaml

from zoo.core import optim
from zoo.core.groups import declared_group_names, group_settings_error
from zoo.core.conflicts import check_budget_fits, leaf_paths, settle_alternatives
from zoo.config import EarlyStopping, TrainConfig, TypeMismatch, coerce, type_hints
from zoo.errors import RecipeError, UnknownComponentError, set_source
from zoo.package_data import registry_path
from zoo.core.registry import Registry, closest_match, unknown_name_message

COMPONENT_KEYS = ("dataset", "condition", "encoder", "decoder", "prior", "likelihood", "objective")
REQUIRED_KEYS = ("dataset", "latent_dim", "encoder", "decoder", "prior", "likelihood", "objective")
RECIPE_KEYS = ("description", "base", "latent_dim", "train") + COMPONENT_KEYS
# What validation raises on a bad value: the RecipeError naming the key path and the problem.
Fail = Callable[[str, str], RecipeError]


def default_registry_path() -> Path:
    """The named variants shipped with the zoo, registry.yaml (package data in a wheel, at the
    checkout's root otherwise; override with $VAE_ZOO_REGISTRY)."""
    if os.environ.get("VAE_ZOO_REGISTRY"):
        return Path(os.environ["VAE_ZOO_REGISTRY"])
    return registry_path()


# libyaml's parser where PyYAML was built with it: 6x faster than the pure-Python one on
# registry.yaml, which every RecipeBook reads (the YAML parser was a tenth of the fast test tier).
FAST_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load(text)`, by libyaml where available. Text libyaml refuses is read again by
    the pure-Python parser, so what it accepts, and the line, column and wording of its errors,
    are as before."""
    try:
        return yaml.load(text, Loader=FAST_YAML_LOADER)
    except yaml.YAMLError:
        return yaml.safe_load(text)


def read_yaml(path: Path) -> Any:
    """A YAML file's content, or a RecipeError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = Path(path).read_bytes()[: exc.start].count(b"\n") + 1
        raise RecipeError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at line {line}); save it as UTF-8"
        ) from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{path}: invalid YAML{where}: {problem}") from None


class RecipeBook:
    """Every variant from one or more recipe files; later files override earlier ones."""

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self._raw: dict[str, dict[str, Any]] = {}
        self._source: dict[str, str] = {}
        for path in paths:
            self.add_file(path)

    def add_file(self, path: Path) -> None:
        """Read the variants of one recipe file."""
        content = read_yaml(path)
        if content is None:
            return
        if not isinstance(content, Mapping):
            raise RecipeError(f"{path}: expected a mapping of variant names to recipes, got {type(content).__name__}")
        for name, recipe in content.items():
            if not isinstance(recipe, Mapping):
                raise RecipeError(f"{path}: {name}: expected a mapping of recipe keys, got {recipe!r}")
            self._raw[str(name)] = dict(recipe)
            self._source[str(name)] = str(path)

    def names(self) -> list[str]:
        """The variant names, sorted."""
        return sorted(self._raw)

    def source(self, name: str) -> str:
        """The file a variant was read from."""
        return self._source[name]

    def raw(self, name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
        """The variant with its `base:` chain merged in, not yet validated."""
        if name not in self._raw:
            raise UnknownComponentError(unknown_name_message("variant", name, self.names()))
        if name in _seen:
            chain = " -> ".join(_seen + (name,))
            raise RecipeError(f"{self._source[name]}: {name}.base: circular inheritance {chain}")
        recipe = copy.deepcopy(self._raw[name])
        base = recipe.pop("base", None)
        merged = recipe
        if base is not None:
            if not isinstance(base, str) or base not in self._raw:
                raise RecipeError(
                    f"{self._source[name]}: {name}.base: " + unknown_name_message("variant", str(base), self.names())
                )
            merged = deep_merge(self.raw(base, _seen + (name,)), recipe)
        settle_alternatives(merged, set(leaf_paths(recipe)).__contains__, f"{self._source[name]}: {name}")
        return merged

    def origins(self, name: str) -> dict[str, int]:
        """{key path: the layer that gave it last}, the layers numbered from the first recipe of
        `name`'s `base:` chain (0) to `name` itself."""
        chain = [name]
        while isinstance(self._raw[chain[-1]].get("base"), str) and len(chain) <= len(self._raw):
            chain.append(self._raw[chain[-1]]["base"])
        return {path: depth for depth, entry in enumerate(reversed(chain)) for path in leaf_paths(self._raw[entry])}

    def resolve(self, name: str, registry: Registry, overrides: Iterable[str] = ()) -> dict[str, Any]:
        """The validated recipe of variant `name`, with overrides applied and defaults filled."""
        return with_overrides(
            self.raw(name), registry, overrides, name=name, source=self._source[name], origins=self.origins(name)
        )


def with_overrides(
    recipe: Mapping[str, Any],
    registry: Registry,
    overrides: Iterable[str],
    *,
    name: str,
    source: str,
    origins: Optional[Mapping[str, int]] = None,
) -> dict[str, Any]:
    """A recipe (raw, or resolved and saved by a run) with `--set` assignments applied, validated.

    `origins` ({key path: layer}, `RecipeBook.origins`) says which recipe of a `base:` chain gave
    each key; a saved recipe has none (all of it counts as beneath --set)."""
    plain = load_yaml(dump(recipe))  # a copy, with tuples as lists
    plain.pop("variant", None)
    overridden = set()
    for assignment in overrides:
        path, value = parse_assignment(assignment)
        set_path(plain, path, value, where=f"{set_source()} {assignment!r}")
        overridden.add(path)

    def by_set(path: str) -> bool:
        return any(path == o or path.startswith(o + ".") for o in overridden)

    settle_alternatives(plain, by_set, f"{set_source()}: {name}")
    resolved = validate(plain, registry, name=name, source=source, overridden=overridden)
    origins = origins or {}
    set_layer = max(origins.values(), default=-1) + 1

    def layer(section: str) -> int:  # the highest layer that gave `section` or a key inside it
        if by_set(section) or any(o.startswith(section + ".") for o in overridden):
            return set_layer
        return max((d for p, d in origins.items() if p == section or p.startswith(section + ".")), default=-1)

    check_budget_fits(resolved, layer, lambda path: set_source() if layer(path) == set_layer else source)
    return resolved


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`; nested mappings merge, a new component name replaces the spec."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = merged.get(key)
        replaces_component = (
            isinstance(value, Mapping)
            and isinstance(old, Mapping)
            and "name" in value
            and value.get("name") != old.get("name")
        )
        if isinstance(value, Mapping) and isinstance(old, Mapping) and not replaces_component:
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_assignment(text: str) -> tuple[str, Any]:
    """'train.steps=100' -> ('train.steps', 100); the value is read as YAML."""
    if "=" not in text:
        raise RecipeError(f"{set_source()} {text!r}: expected key.path=value")
    path, _, value_text = text.partition("=")
    path = path.strip()
    if not path or any(not part for part in path.split(".")):
        raise RecipeError(f"{set_source()} {text!r}: empty key path")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise RecipeError(f"{set_source()} {text!r}: value is not valid YAML: {problem}") from None
    return path, value


def set_path(recipe: dict[str, Any], path: str, value: Any, *, where: str) -> None:
    """Set `recipe[a][b]... = value` for path 'a.b...', creating mappings on the way."""
    parts = path.split(".")
    node = recipe
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{where}: {'.'.join(parts[: depth + 1])} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value


def validate(
    recipe: Mapping[str, Any], registry: Registry, *, name: str, source: str, overridden: AbstractSet[str] = frozenset()
) -> dict[str, Any]:
    """Check every key of a merged recipe; returns it with sequences as tuples and defaults filled."""

    def fail(path: str, problem: str) -> RecipeError:
        origin = (
            set_source()
            if any(path == o or path.startswith(o + ".") or o.startswith(path + ".") for o in overridden)
            else source
        )
        return RecipeError(f"{origin}: {name}.{path}: {problem}")

    for key in recipe:
        if key not in RECIPE_KEYS:
            raise fail(
                key, unknown_name_message("recipe key", key, RECIPE_KEYS).replace("unknown recipe key", "unknown key")
            )
    for key in REQUIRED_KEYS:
        if key not in recipe:
            raise fail(key, "missing (every recipe needs " + ", ".join(REQUIRED_KEYS) + ")")
    resolved: dict[str, Any] = {"variant": name}
    if "description" in recipe:
        resolved["description"] = str(recipe["description"])
    # One size, or one per stochastic layer, bottom (nearest x) first: [40, 40] is a two-level hierarchy.
    try:
        resolved["latent_dim"] = coerce(recipe["latent_dim"], Union[int, Sequence[int]])
    except TypeMismatch:
        raise fail(
            "latent_dim", f"expected an int or a list of ints (one per stochastic layer), got {recipe['latent_dim']!r}"
        ) from None
    sizes = latent_sizes(resolved)
    if not sizes or min(sizes) < 1:
        raise fail("latent_dim", f"expected positive sizes, got {recipe['latent_dim']!r}")
    for kind in COMPONENT_KEYS:
        spec = recipe.get(kind)
        if spec is None and kind == "condition":
            resolved[kind] = None
            continue
        resolved[kind] = validate_component(kind, spec, registry, fail)
    resolved["train"] = validate_train(recipe.get("train"), fail)
    declared = declared_group_names(registry.get("objective", resolved["objective"]["name"]).factory)
    wrong = group_settings_error(resolved["train"]["parameter_groups"], declared, resolved["objective"]["name"])
    if wrong is not None:
        raise fail(f"train.parameter_groups.{wrong[0]}", wrong[1])
    return resolved


def validate_component(kind: str, spec: Any, registry: Registry, fail: Fail) -> dict[str, Any]:
    """A component spec `{name, **kwargs}` checked against its factory's signature."""
    if isinstance(spec, str):  # shorthand: `likelihood: bernoulli`
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise fail(kind, f"expected a mapping with a 'name' key, got {spec!r}")
    if "name" not in spec:
        raise fail(kind, f"missing 'name' (known {kind}s: {', '.join(registry.names(kind))})")
    try:
        component = registry.get(kind, str(spec["name"]))
    except UnknownComponentError as exc:
        raise fail(f"{kind}.name", str(exc)) from None
    options = component.options()
    hints = type_hints(component.factory)
    checked: dict[str, Any] = {"name": component.name}
    for key, value in spec.items():
        if key == "name":
            continue
        if key not in options:
            known = ", ".join(options) or "none"
            raise fail(
                f"{kind}.{key}",
                f"unknown option of {kind} {component.name!r}{closest_match(key, options)}; options: {known}",
            )
        try:
            checked[key] = coerce(value, hints.get(key, Any))
        except TypeMismatch as exc:
            raise fail(f"{kind}.{key}", f"expected {exc.expected}, got {value!r}") from None
    for key, parameter in options.items():
        if key in checked:
            continue
        if parameter.default is parameter.empty:
            raise fail(f"{kind}.{key}", f"missing (required by {kind} {component.name!r})")
        checked[key] = parameter.default
    return checked


def validate_dataclass(cls: type, values: Any, path: str, fail: Fail) -> dict[str, Any]:
    """A settings section (e.g. `train:`, a suite's `budget:`) checked against a dataclass's fields:
    unknown keys, missing required ones, each value against its annotation (a field that is itself
    a dataclass is a nested section, a `Mapping[str, X]` is checked entry by entry), and the
    `positive` and `nonnegative` ranges of its metadata. `path` is the section's key path ('' for
    a whole file); a field's `expected` metadata gives the words of its type errors."""
    if not isinstance(values, Mapping):
        raise fail(path, f"expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = type_hints(cls)
    within = (lambda key: f"{path}.{key}") if path else str
    for key in values:
        if key not in fields:
            raise fail(within(key), f"unknown key{closest_match(str(key), fields)}; keys: {', '.join(fields)}")
    result = {}
    for key, field in fields.items():
        hint = hints.get(key, Any)
        if key in values or dataclasses.is_dataclass(hint):  # an absent section is its defaults, as a mapping too
            result[key] = validate_field(field, hint, values.get(key), within(key), fail)
        elif field.default is not dataclasses.MISSING:
            result[key] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            result[key] = field.default_factory()
        else:
            raise fail(within(key), "missing")
    return result


def validate_field(field: dataclasses.Field, hint: Any, raw: Any, path: str, fail: Fail) -> Any:
    """One value of a settings section, checked (see validate_dataclass)."""
    if dataclasses.is_dataclass(hint):  # a nested section; null or absent means its defaults
        return validate_dataclass(hint, {} if raw is None else raw, path, fail)  # type: ignore[arg-type]
    element = (typing.get_args(hint) or (None,))[0]
    if typing.get_origin(hint) in (list, collections.abc.Sequence) and dataclasses.is_dataclass(element):
        if not isinstance(raw, list):  # a list of sections, each checked with its index in the path
            raise fail(path, f"expected a list of mappings, got {raw!r}")
        return tuple(validate_dataclass(element, entry, f"{path}[{index}]", fail) for index, entry in enumerate(raw))  # type: ignore[arg-type]
    if typing.get_origin(hint) in (dict, collections.abc.Mapping) and typing.get_args(hint):
        if not isinstance(raw, Mapping):
            raise fail(path, f"expected a mapping, got {raw!r}")
        entry = typing.get_args(hint)[1]
        return {key: validate_field(field, entry, value, f"{path}.{key}", fail) for key, value in raw.items()}
    try:
        value = coerce(raw, hint)
    except TypeMismatch as exc:
        raise fail(path, f"expected {field.metadata.get('expected', exc.expected)}, got {raw!r}") from None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return value  # range checks apply to numbers only (not to null or "epoch")
    if field.metadata.get("positive") and not (math.isfinite(value) and value > 0):
        raise fail(path, f"expected a positive number, got {raw!r}")
    if field.metadata.get("nonnegative") and value < 0:
        raise fail(path, f"expected a number >= 0, got {raw!r}")
    return value


def validate_train(values: Any, fail: Fail) -> dict[str, Any]:
    """The `train:` section: the budget, and the optax optimizer, schedule and early stopping it names
    (for the whole model, and for each parameter group named in `train.parameter_groups`)."""
    train = validate_dataclass(TrainConfig, values or {}, "train", fail)
    check_optimizer_settings(train, train, "train", fail)
    for group, settings in train["parameter_groups"].items():
        check_optimizer_settings(settings, train, f"train.parameter_groups.{group}", fail)
    if train["early_stopping"] is not None:
        train["early_stopping"] = validate_dataclass(
            EarlyStopping, train["early_stopping"], "train.early_stopping", fail
        )
    return train


def check_optimizer_settings(settings: dict[str, Any], train: Mapping[str, Any], path: str, fail: Fail) -> None:
    """The optax optimizer and schedule of `train:` or of one parameter group, checked in place (a
    group's learning rate and gradient options default to train's)."""
    learning_rate = settings["learning_rate"] if settings["learning_rate"] is not None else train["learning_rate"]
    for key, check in (
        ("optimizer", optim.check_optimizer),
        ("schedule", lambda spec: optim.check_schedule(spec, learning_rate)),
    ):
        if settings[key] is None:
            continue
        try:
            settings[key] = check(settings[key])
        except optim.OptionError as exc:
            raise fail(f"{path}.{key}.{exc.key}", exc.problem) from None
    clip = settings["clip_grad_norm"] if settings["clip_grad_norm"] is not None else train["clip_grad_norm"]
    normalize = settings["normalize_grad"] if settings["normalize_grad"] is not None else train["normalize_grad"]
    if clip is not None and normalize:
        raise fail(
            f"{path}.clip_grad_norm",
            "has no effect with train.normalize_grad: true (each gradient is then "
            "scaled to norm 1 after clipping); drop one of them",
        )


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(tuple, lambda dumper, data: dumper.represent_list(list(data)))


def dump(recipe: Mapping[str, Any]) -> str:
    """A resolved recipe as YAML (tuples written as lists)."""
    return yaml.dump(dict(recipe), Dumper=_Dumper, sort_keys=False, default_flow_style=None)


def latent_sizes(recipe: Mapping[str, Any]) -> tuple[int, ...]:
    """The size of each stochastic layer, bottom first (one entry for a one-level model)."""
    value = recipe["latent_dim"]
    return (value,) if isinstance(value, int) else tuple(value)


def train_config(recipe: Mapping[str, Any]) -> TrainConfig:
    """The recipe's `train:` section as a TrainConfig."""
    return TrainConfig(**recipe["train"])


def early_stopping_config(recipe: Mapping[str, Any]) -> Optional[EarlyStopping]:
    """The recipe's `train.early_stopping`, or None when it has none."""
    settings = recipe["train"].get("early_stopping")
    return None if settings is None else EarlyStopping(**settings)
