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
    "train": "zoo.api",
    "load": "zoo.api",
    "build": "zoo.api",
    "compare": "zoo.api",
    "Run": "zoo.trained_run",
    "DataError": "zoo.errors",
    "DuplicateComponentError": "zoo.errors",
    "ModelBuildError": "zoo.errors",
    "PluginLoadError": "zoo.errors",
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
    "hookimpl": "zoo.hookspecs",
    "Batch": "zoo.interfaces",
    "Condition": "zoo.interfaces",
    "Dataset": "zoo.interfaces",
    "Decoder": "zoo.interfaces",
    "DenseExportable": "zoo.interfaces",
    "DenseNetwork": "zoo.interfaces",
    "Encoder": "zoo.interfaces",
    "Likelihood": "zoo.interfaces",
    "Objective": "zoo.interfaces",
    "Prior": "zoo.interfaces",
    "Split": "zoo.interfaces",
    "KINDS": "zoo.registry",
    "Component": "zoo.registry",
    "Registry": "zoo.registry",
    "default_registry": "zoo.plugin_manager",
    "fill_registry": "zoo.plugin_manager",
    "make_plugin_manager": "zoo.plugin_manager",
    "RecipeBook": "zoo.recipes",
    "default_registry_path": "zoo.recipes",
    "LatentVariableModel": "zoo.model",
    "build_model": "zoo.model",
    "kl_divergence": "zoo.model",
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
    from zoo.api import build, compare, load, train
    from zoo.trained_run import Run
    from zoo.errors import (
        DataError,
        DuplicateComponentError,
        ModelBuildError,
        PluginLoadError,
        RecipeError,
        RunDirectoryError,
        TrainingDivergedError,
        UnknownComponentError,
        ZooError,
    )
    from zoo.config import Above, AtLeast, AtMost, Between, Interval
    from zoo.hookspecs import hookimpl
    from zoo.interfaces import (
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
    from zoo.model import LatentVariableModel, build_model, kl_divergence
    from zoo.plugin_manager import default_registry, fill_registry, make_plugin_manager
    from zoo.recipes import RecipeBook, default_registry_path
    from zoo.registry import KINDS, Component, Registry


def __getattr__(name: str) -> Any:
    """A public name from its module, or a submodule (`zoo.recipes`), imported on first use."""
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value
    try:
        return importlib.import_module(f"zoo.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"zoo.{name}":
            raise
        raise AttributeError(f"module 'zoo' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
