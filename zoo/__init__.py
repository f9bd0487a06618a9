"""vae-zoo: a plugin-style zoo of variational autoencoders in JAX.

The public API: the registry and plugin hook, the interfaces components
implement, recipes, model assembly, objectives, training and evaluation.
"""

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
from zoo.config import AtLeast
from zoo.hookspecs import hookimpl
from zoo.interfaces import Batch, Condition, Dataset, Decoder, Encoder, Likelihood, Objective, Prior, Split
from zoo.registry import KINDS, Component, Registry
from zoo.plugin_manager import default_registry, fill_registry, make_plugin_manager
from zoo.recipes import RecipeBook, default_registry_path
from zoo.model import LatentVariableModel, build_model, kl_divergence

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "AtLeast",
    "Batch",
    "Component",
    "Condition",
    "DataError",
    "Dataset",
    "Decoder",
    "DuplicateComponentError",
    "Encoder",
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
