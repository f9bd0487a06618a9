"""Data plumbing: building a recipe's dataset and condition, and the batch schedule.

The whole dataset lives on the device; a training step receives only the
indices of its batch, drawn from a per-epoch permutation that depends on the
seed and the epoch alone, so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import numpy as np

from zoo.errors import DataError, ZooError
from zoo.interfaces import Dataset, Shape
from zoo.registry import Registry


@dataclasses.dataclass(frozen=True)
class Unconditional:
    """No condition: x is the image and c is None (the plain VAE)."""

    image_shape: Shape

    @property
    def x_shape(self) -> Shape:
        return self.image_shape

    c_shape = None

    def split(self, images, labels):
        return images, None

    def assemble(self, x, c):
        return x

    def parse(self, text: str, dataset: Dataset):
        raise ZooError("this model is unconditional and takes no --condition")

    def grid(self, dataset: Dataset, per_row: int):
        return None, []


def build_dataset(recipe: Mapping[str, Any], registry: Registry, data_dir: Optional[str] = None) -> Dataset:
    """The recipe's dataset, checked to hold images in [0, 1] with labels."""
    spec = recipe["dataset"]
    try:
        dataset = registry.build("dataset", spec, data_dir=data_dir)
    except ZooError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"dataset {spec['name']!r} could not be loaded: {exc}") from exc
    if not isinstance(dataset, Dataset):
        raise DataError(f"dataset {spec['name']!r} returned {type(dataset).__name__}, not a zoo.Dataset")
    if dataset.train.images.ndim != 4:
        raise DataError(f"dataset {spec['name']!r}: images must be (N, height, width, channels), got {dataset.train.images.shape}")
    return dataset


def build_condition(recipe: Mapping[str, Any], registry: Registry, dataset: Dataset):
    """The recipe's condition for this dataset, or Unconditional when it names none."""
    if recipe.get("condition") is None:
        return Unconditional(dataset.image_shape)
    spec = recipe["condition"]
    try:
        return registry.build("condition", spec, image_shape=dataset.image_shape, num_classes=dataset.num_classes)
    except ZooError:
        raise
    except (TypeError, ValueError) as exc:
        raise ZooError(f"condition {spec['name']!r} could not be built for dataset {dataset.name!r}: {exc}") from exc


def batch_indices(num_examples: int, batch_size: int, seed: int, start_step: int, num_steps: int) -> np.ndarray:
    """Indices `(num_steps, batch_size)` of steps start_step.. of an epoch-wise shuffle (remainder dropped)."""
    if batch_size > num_examples:
        raise DataError(f"batch_size {batch_size} is larger than the {num_examples} training examples")
    steps_per_epoch = num_examples // batch_size
    rows = []
    permutations: dict[int, np.ndarray] = {}
    for step in range(start_step, start_step + num_steps):
        epoch, position = divmod(step, steps_per_epoch)
        if epoch not in permutations:
            permutations[epoch] = np.random.default_rng([seed, epoch]).permutation(num_examples)
        rows.append(permutations[epoch][position * batch_size : (position + 1) * batch_size])
    return np.stack(rows).astype(np.int32)
