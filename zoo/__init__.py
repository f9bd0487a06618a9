"""vae-zoo: a plugin-style zoo of variational autoencoders in JAX.

The public API: `train`, `load`, `build` and `compare` with the `Run` a
trained run loads as (docs/api.md), the registry and plugin hook, the
interfaces components implement, recipes and model assembly.

Names are loaded on first use (PEP 562 `__getattr__`): `import zoo` and
`zoo --help` do not import JAX, flax or distrax; `zoo.Dataset` or
`zoo.build_model` imports its module then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_PUBLIC = {
    "train": "zoo.cli.api",
    "load": "zoo.cli.api",
    "build": "zoo.cli.api",
    "compare": "zoo.cli.api",
    "Run": "zoo.evaluation.trained_run",
    "DataError": "zoo.errors",
    "DuplicateComponentError": "zoo.errors",
    "ModelBuildError": "zoo.errors",
    "PluginLoadError": "zoo.errors",
    "PluginFaultError": "zoo.errors",
    "RecipeError": "zoo.errors",
    "RunDirectoryError": "zoo.errors",
    "TrainingDivergedError": "zoo.errors",
    "UnknownComponentError": "zoo.errors",
    "ZooError": "zoo.errors",
    "AtLeast": "zoo.config",
    "AtMost": "zoo.config",
    "Above": "zoo.config",
    "Between": "zoo.config",
    "Interval": "zoo.config",
    "hookimpl": "zoo.core.hookspecs",
    "Batch": "zoo.core.interfaces",
    "Condition": "zoo.core.interfaces",
    "Dataset": "zoo.core.interfaces",
    "Decoder": "zoo.core.interfaces",
    "DenseExportable": "zoo.core.interfaces",
    "DenseNetwork": "zoo.core.interfaces",
    "Encoder": "zoo.core.interfaces",
    "Likelihood": "zoo.core.interfaces",
    "Objective": "zoo.core.interfaces",
    "Prior": "zoo.core.interfaces",
    "Split": "zoo.core.interfaces",
    "KINDS": "zoo.core.registry",
    "Component": "zoo.core.registry",
    "Registry": "zoo.core.registry",
    "default_registry": "zoo.core.plugin_manager",
    "fill_registry": "zoo.core.plugin_manager",
    "make_plugin_manager": "zoo.core.plugin_manager",
    "RecipeBook": "zoo.core.recipes",
    "default_registry_path": "zoo.core.recipes",
    "LatentVariableModel": "zoo.core.model",
    "build_model": "zoo.core.model",
    "kl_divergence": "zoo.core.divergence",
    "ParameterGroup": "zoo.core.groups",
}

__all__ = [
    "Run",
    "build",
    "compare",
    "load",
    "train",
    "KINDS",
    "Above",
    "AtLeast",
    "AtMost",
    "Batch",
    "Between",
    "Component",
    "Condition",
    "DataError",
    "Dataset",
    "Decoder",
    "DenseExportable",
    "DenseNetwork",
    "DuplicateComponentError",
    "Encoder",
    "Interval",
    "LatentVariableModel",
    "Likelihood",
    "ModelBuildError",
    "Objective",
    "PluginFaultError",
    "ParameterGroup",
    "PluginLoadError",
    "Prior",
    "RecipeBook",
    "RecipeError",
    "Registry",
    "RunDirectoryError",
    "Split",
    "TrainingDivergedError",
    "UnknownComponentError",
    "ZooError",
    "build_model",
    "default_registry",
    "default_registry_path",
    "fill_registry",
    "hookimpl",
    "kl_divergence",
    "make_plugin_manager",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ loads these
    from zoo.cli.api import build, compare, load, train
    from zoo.evaluation.trained_run import Run
    from zoo.errors import (
        DataError,
        DuplicateComponentError,
        ModelBuildError,
        PluginFaultError,
        PluginLoadError,
        RecipeError,
        RunDirectoryError,
        TrainingDivergedError,
        UnknownComponentError,
        ZooError,
    )
    from zoo.config import Above, AtLeast, AtMost, Between, Interval
    from zoo.core.hookspecs import hookimpl
    from zoo.core.interfaces import (
        Batch,
        Condition,
        Dataset,
        Decoder,
        DenseExportable,
        DenseNetwork,
        Encoder,
        Likelihood,
        Objective,
        Prior,
        Split,
    )
    from zoo.core.divergence import kl_divergence
    from zoo.core.groups import ParameterGroup
    from zoo.core.model import LatentVariableModel, build_model
    from zoo.core.plugin_manager import default_registry, fill_registry, make_plugin_manager
    from zoo.core.recipes import RecipeBook, default_registry_path
    from zoo.core.registry import KINDS, Component, Registry


# The subpackages, lowest layer first (tests/test_layering.py holds the order): a module is
# also reachable by its short name, `zoo.recipes` for zoo.core.recipes, as before the grouping.
_SUBPACKAGES = ("core", "training", "evaluation", "web", "cli")


def __getattr__(name: str) -> Any:
    """A public name from its module, or a module (`zoo.recipes`, `zoo.core`), imported on first use."""
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value
    for candidate in (f"zoo.{name}", *(f"zoo.{package}.{name}" for package in _SUBPACKAGES)):
        try:
            return importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            if exc.name != candidate:
                raise
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
