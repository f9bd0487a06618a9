"""`arrays`: images from an `.npz` or a `.npy` file, or (through `zoo.train(data=...)`) from numpy
arrays in memory, written to such a file in the run directory so every later reader finds them.

An `.npz` holds `train` and optionally `validation`, `test`, `train_labels`, `validation_labels`,
`test_labels` and `class_names`; a `.npy` holds one array of images, split by fractions.
Images are (N, H, W) or (N, H, W, C), uint8 in [0, 255] or floats in [0, 1].
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import zoo
from vae_zoo_plugins.datasets.own_data import (
    Fraction,
    as_images,
    as_labels,
    numbered_class_names,
    own_dataset,
    to_unit_interval,
)
from zoo.core.data import PixelMode, Seed

SPLITS = ("train", "validation", "test")
KNOWN_KEYS = (*SPLITS, *(f"{s}_labels" for s in SPLITS), "class_names")


def read_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz by key, or a .npy's one array as `train`."""
    file = Path(path)
    if not file.is_file():
        raise zoo.DataError(f"arrays: {path} is not a file (expected an .npz or .npy)")
    try:
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"train": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise zoo.DataError(f"arrays: cannot read {path} as .npz or .npy: {exc}") from None


def check_keys(arrays: Mapping[str, Any], where: str) -> None:
    """`train` present, every key known (a misspelt `valdiation` would silently be ignored)."""
    unknown = sorted(set(arrays) - set(KNOWN_KEYS))
    if unknown or "train" not in arrays:
        problem = f"unknown keys {unknown}" if unknown else "no 'train' array"
        raise zoo.DataError(f"{where}: {problem}; keys: {', '.join(KNOWN_KEYS)}")
    for split in SPLITS:
        if f"{split}_labels" in arrays and split not in arrays:
            raise zoo.DataError(f"{where}: {split}_labels given without {split} images")
    given = [s for s in SPLITS if s in arrays]
    with_labels = [s for s in given if f"{s}_labels" in arrays]
    if with_labels and len(with_labels) != len(given):
        missing = [s for s in given if s not in with_labels]
        raise zoo.DataError(f"{where}: labels missing for the {', '.join(missing)} images; give {missing[0]}_labels")


def dataset_from_arrays(
    arrays: Mapping[str, Any],
    where: str,
    validation: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    pixels: PixelMode = "grayscale",
) -> zoo.Dataset:
    """A Dataset from arrays by key (the .npz layout), each checked and scaled to [0, 1]."""
    check_keys(arrays, where)
    splits, levels, shapes = {}, set(), {}
    for name in (s for s in SPLITS if s in arrays):
        images, level = to_unit_interval(as_images(arrays[name], f"{where}: {name}"), f"{where}: {name}")
        labels = as_labels(arrays.get(f"{name}_labels"), len(images), f"{where}: {name}_labels")
        splits[name], shapes[name] = zoo.Split(images, labels), images.shape[1:]
        levels.add(level)
    if len(set(shapes.values())) > 1:
        raise zoo.DataError(f"{where}: the splits' images differ in shape: {shapes}")
    class_names = [str(n) for n in np.asarray(arrays.get("class_names", []))]
    labelled = "train_labels" in arrays
    if labelled and not class_names:
        class_names = numbered_class_names(splits)
    for name, split in splits.items():
        if class_names and len(split.labels) and split.labels.max() >= len(class_names):
            raise zoo.DataError(
                f"{where}: {name}_labels reach {split.labels.max()} but there are {len(class_names)} class_names"
            )
    return own_dataset(
        "arrays",
        splits,
        class_names,
        validation=validation,
        test=test,
        seed=seed,
        pixels=pixels,
        pixel_levels=levels.pop() if len(levels) == 1 else None,
    )


def make_arrays(
    path: str,
    validation: Fraction = 0.1,
    test: Fraction = 0.1,
    seed: Seed = 0,
    pixels: PixelMode = "grayscale",
) -> zoo.Dataset:
    """Images from an .npz (train, validation, test, *_labels, class_names) or a .npy file.

    >>> make_arrays("faces.npz")  # doctest: +SKIP
    """
    return dataset_from_arrays(read_arrays(str(path)), f"arrays: {path}", validation, test, seed, pixels)


make_arrays.conformance = {"files": "arrays", "path_option": "path"}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """The arrays dataset (an .npz or .npy file)."""
    register("dataset", "arrays", make_arrays)
