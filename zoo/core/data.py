"""Data plumbing: building a recipe's dataset and condition, and the batch schedule.

The whole dataset lives on the device; a training step receives only the
indices of its batch, drawn from a per-epoch permutation that depends on the
seed and the epoch alone, so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, NoReturn, Optional, Sequence

import numpy as np

from zoo.config import AtLeast
from zoo.errors import DataError, ModelBuildError, ZooError
from zoo.core.interfaces import Array, Dataset, Shape, Split
from zoo.core.registry import Registry, build_component

PixelMode = Literal["grayscale", "dynamic_binarize", "static_binarize"]
Seed = Annotated[int, AtLeast(0)]  # of a split's permutation and the static binarization (numpy takes no negative seed)
PIXEL_MODES = typing.get_args(PixelMode)


@dataclasses.dataclass(frozen=True)
class Unconditional:
    """No condition: x is the image and c is None (the plain VAE)."""

    image_shape: Shape

    @property
    def x_shape(self) -> Shape:
        return self.image_shape

    c_shape = None

    def split(self, images: Array, labels: Array) -> tuple[Array, None]:
        return images, None

    def assemble(self, x: Array, c: Optional[Array]) -> Array:
        return x

    def parse(self, text: str, dataset: Dataset) -> NoReturn:
        raise ZooError("this model is unconditional and takes no --condition")

    def grid(self, dataset: Dataset, per_row: int) -> tuple[None, list[str]]:
        return None, []


def binarize(images: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli draw per pixel with the pixel's intensity as probability, from a fixed seed."""
    return (np.random.default_rng(seed).uniform(size=images.shape) < images).astype(np.float32)


def image_dataset(
    name: str,
    train: Split,
    test: Split,
    class_names: Sequence[str],
    *,
    pixels: str = "grayscale",
    validation_size: int = 0,
    seed: int = 0,
    validation: Optional[Split] = None,
    factor_names: Sequence[str] = (),
    factor_sizes: Sequence[int] = (),
    pixel_levels: Optional[int] = None,
) -> Dataset:
    """A Dataset from train and test images in [0, 1]: the validation split held out of train
    by a seeded permutation (unless the dataset has its own), then the pixel mode applied.
    The splits' factors (if any) follow their images. `pixel_levels` (256 for 8-bit images) holds
    only while the pixels stay grayscale: binarized data is binary.

    >>> image_dataset("toy", Split(x, y), Split(xt, yt), ["a", "b"], pixels="dynamic_binarize", validation_size=100)  # doctest: +SKIP
    """
    if pixels not in PIXEL_MODES:
        raise DataError(f"{name}: unknown pixels mode {pixels!r}; modes: {', '.join(PIXEL_MODES)}")
    if validation is None:
        if not 0 <= validation_size < len(train.images):
            raise DataError(
                f"{name}: validation_size {validation_size} must lie in 0..{len(train.images) - 1} (the training split has {len(train.images)} images)"
            )
        order = np.random.default_rng(seed).permutation(len(train.images))
        held, kept = np.sort(order[:validation_size]), np.sort(order[validation_size:])
        train, validation = train.take(kept), train.take(held)
    if pixels != "grayscale":
        # Validation and test are binarized once, with seeds of their own, so every run scores the same pixels.
        validation = validation._replace(images=binarize(validation.images, seed + 1))
        test = test._replace(images=binarize(test.images, seed + 2))
    if pixels == "static_binarize":
        train = train._replace(images=binarize(train.images, seed))
    return Dataset(
        name,
        train,
        validation,
        test,
        list(class_names),
        dynamic_binarization=pixels == "dynamic_binarize",
        factor_names=tuple(factor_names),
        factor_sizes=tuple(int(s) for s in factor_sizes),
        pixel_levels=pixel_levels if pixels == "grayscale" else None,
    )


def write_data_file(data: Any, path: Path) -> Path:
    """Images handed to `zoo.train(data=...)` (an array, or a dict of the `arrays` dataset's
    keys) written as an .npz at `path`, which the `arrays` dataset reads and checks."""
    arrays = dict(data) if isinstance(data, Mapping) else {"train": data}
    try:
        arrays = {str(key): np.asarray(value) for key, value in arrays.items()}
    except (TypeError, ValueError) as exc:
        raise DataError(f"data: cannot be made a numpy array: {exc}") from None
    if any(a.dtype == object for a in arrays.values()):
        raise DataError("data: expected numeric arrays (images (N, H, W[, C]), labels (N,)), got Python objects")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def evaluation_split(dataset: Dataset, name: str, seed: int = 0) -> Split:
    """A split as evaluation sees it: dynamically binarized training data is binarized once."""
    split = dataset.split(name)
    if not len(split.images):
        raise DataError(f"{dataset.name}: the {name} split is empty")
    if name == "train" and dataset.dynamic_binarization:
        return split._replace(images=binarize(split.images, seed))
    return split


def build_dataset(recipe: Mapping[str, Any], registry: Registry, data_dir: Optional[str] = None) -> Dataset:
    """The recipe's dataset, checked to hold images in [0, 1] with labels."""
    spec = recipe["dataset"]
    dataset = build_component(registry, "dataset", spec, DataError, data_dir=data_dir)
    if not isinstance(dataset, Dataset):
        raise DataError(f"dataset {spec['name']!r} returned {type(dataset).__name__}, not a zoo.Dataset")
    if dataset.train.images.ndim != 4:
        raise DataError(
            f"dataset {spec['name']!r}: images must be (N, height, width, channels), got {dataset.train.images.shape}"
        )
    check_factors(dataset, f"dataset {spec['name']!r}")
    return dataset


def check_factors(dataset: Dataset, where: str) -> None:
    """The factors a dataset declares are in every split, one int column per factor, each value
    within its factor's size; a dataset that declares none has none."""
    names, sizes = tuple(dataset.factor_names), tuple(dataset.factor_sizes)
    if len(names) != len(sizes) or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sizes):
        raise DataError(
            f"{where}: factor_sizes {list(sizes)} must give a size >= 1 for each of the factors {list(names)}"
        )
    for split_name in ("train", "validation", "test"):
        split = dataset.split(split_name)
        factors = split.factors
        if not names:
            if factors is not None:
                raise DataError(
                    f"{where}: the {split_name} split has factors but the dataset names none (factor_names)"
                )
            continue
        expected = (len(split.images), len(names))
        if factors is None or factors.shape != expected or not np.issubdtype(factors.dtype, np.integer):
            found = None if factors is None else f"{factors.dtype} {factors.shape}"
            raise DataError(f"{where}: the {split_name} split's factors must be ints of shape {expected}, got {found}")
        if len(factors) and (np.any(factors < 0) or np.any(factors >= np.asarray(sizes))):
            raise DataError(
                f"{where}: the {split_name} split's factors fall outside 0..size - 1 of {dict(zip(names, sizes))}"
            )


def build_condition(recipe: Mapping[str, Any], registry: Registry, dataset: Dataset) -> Any:
    """The recipe's condition for this dataset, or Unconditional when it names none."""
    if recipe.get("condition") is None:
        return Unconditional(dataset.image_shape)
    return build_component(
        registry,
        "condition",
        recipe["condition"],
        ModelBuildError,
        image_shape=dataset.image_shape,
        num_classes=dataset.num_classes,
    )


def batch_indices(num_examples: int, batch_size: int, seed: int, start_step: int, num_steps: int) -> np.ndarray:
    """Indices `(num_steps, batch_size)` of steps start_step.. of an epoch-wise shuffle (remainder dropped)."""
    if batch_size > num_examples:
        raise DataError(f"batch_size {batch_size} is larger than the {num_examples} training examples")
    steps_per_epoch = num_examples // batch_size
    rows = []
    for step in range(start_step, start_step + num_steps):
        epoch, position = divmod(step, steps_per_epoch)
        rows.append(epoch_order(num_examples, seed, epoch)[position * batch_size : (position + 1) * batch_size])
    return np.stack(rows).astype(np.int32)


@functools.lru_cache(maxsize=4)
def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of one epoch, a function of the seed and epoch alone (cached: a streamed
    input asks for it once per step)."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)
