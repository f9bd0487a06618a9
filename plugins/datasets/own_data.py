"""What the `images`, `arrays` and `tfds` datasets share: pixels checked and scaled to [0, 1],
images made (N, H, W, C), and splits held out by seeded fractions.

A user's data is checked here once, with a message that names what is wrong: NaN, values that
are neither 8-bit nor in [0, 1], too few images for the splits asked for.
"""

from __future__ import annotations

import math
from typing import Annotated, Mapping, Optional, Sequence

import numpy as np

import zoo
from zoo import Between
from zoo.core.data import PixelMode, image_dataset

Fraction = Annotated[float, Between(0, 0.9)]  # of the images held out for a split
EIGHT_BIT_LEVELS = 256


def describe_range(array: np.ndarray) -> str:
    """'dtype in [low, high]', what a refusal names."""
    return f"{array.dtype} in [{np.nanmin(array):g}, {np.nanmax(array):g}]"


def to_unit_interval(array: np.ndarray, where: str) -> tuple[np.ndarray, Optional[int]]:
    """(float32 pixels in [0, 1], 256 for 8-bit data else None): uint8 is divided by 255, floats in
    [0, 1] are kept. Anything else is refused naming the range found, as guessing a scale
    (0..65535? -1..1?) would train on the wrong data without a word."""
    array = np.asarray(array)
    if array.size == 0:
        raise zoo.DataError(f"{where}: holds no images")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255), EIGHT_BIT_LEVELS
    if np.issubdtype(array.dtype, np.bool_):
        return array.astype(np.float32), None
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise zoo.DataError(f"{where}: pixels of dtype {array.dtype}; expected uint8 in [0, 255] or floats in [0, 1]")
    if np.issubdtype(array.dtype, np.floating) and np.isnan(array).any():
        raise zoo.DataError(
            f"{where}: {int(np.isnan(array).sum())} pixels are NaN; expected uint8 in [0, 255] or floats in [0, 1]"
        )
    low, high = float(np.min(array)), float(np.max(array))
    if np.issubdtype(array.dtype, np.integer):
        if low >= 0 and high <= 255:  # 8-bit values in a wider integer type
            return array.astype(np.float32) / np.float32(255), EIGHT_BIT_LEVELS
        raise zoo.DataError(f"{where}: values {describe_range(array)}; expected uint8 in [0, 255] or floats in [0, 1]")
    if low < 0 or high > 1:
        raise zoo.DataError(
            f"{where}: values {describe_range(array)}; expected floats in [0, 1] or uint8 in [0, 255] "
            "(scale them first, e.g. (x - x.min()) / (x.max() - x.min()))"
        )
    return array.astype(np.float32), None


def as_images(array: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W, C) from (N, H, W) or (N, H, W, C); any other shape refused."""
    array = np.asarray(array)
    if array.ndim == 3:
        return array[..., None]
    if array.ndim != 4:
        raise zoo.DataError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {array.shape}")
    return array


def as_labels(labels: Optional[np.ndarray], count: int, where: str) -> np.ndarray:
    """int32 labels (N,) (zeros when there are none), refused unless one non-negative int per image."""
    if labels is None:
        return np.zeros(count, np.int32)
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer) or (count and labels.min() < 0):
        raise zoo.DataError(
            f"{where}: labels must be {count} non-negative ints, one per image; got {labels.dtype} {labels.shape}"
        )
    return labels.astype(np.int32)


def held_out_sizes(count: int, validation: float, test: float, where: str) -> tuple[int, int]:
    """(validation, test) sizes of `count` images: a fraction above 0 holds out at least one image,
    and at least one is left to train on."""
    sizes = tuple(math.ceil(fraction * count) if fraction > 0 else 0 for fraction in (validation, test))
    if sum(sizes) >= count:
        raise zoo.DataError(
            f"{where}: too few images ({count}) for the splits: validation {validation} and test {test} "
            f"hold out {sizes[0]} and {sizes[1]}, leaving none to train on; add images or lower the fractions"
        )
    return sizes[0], sizes[1]


def split_by_fractions(
    split: zoo.Split, validation: float, test: float, seed: int, where: str
) -> tuple[zoo.Split, zoo.Split, zoo.Split]:
    """(train, validation, test) of one split by a seeded permutation (each part kept in file order)."""
    validation_size, test_size = held_out_sizes(len(split.images), validation, test, where)
    order = np.random.default_rng(seed).permutation(len(split.images))
    parts = np.split(order, [validation_size, validation_size + test_size])
    held_validation, held_test, kept = (np.sort(part) for part in parts)
    return split.take(kept), split.take(held_validation), split.take(held_test)


def numbered_class_names(splits: Mapping[str, zoo.Split]) -> list[str]:
    """Class names "0", "1", ... up to the largest label of any split: labelled data without names."""
    return [str(c) for c in range(max(int(s.labels.max()) for s in splits.values() if len(s.labels)) + 1)]


def own_dataset(
    name: str,
    splits: dict[str, zoo.Split],
    class_names: Sequence[str],
    *,
    validation: float,
    test: float,
    seed: int,
    pixels: PixelMode,
    pixel_levels: Optional[int],
) -> zoo.Dataset:
    """A Dataset from a train split and, when the data has them, its own validation and test splits;
    a missing one is held out of train by its fraction."""
    train = splits["train"]
    if "test" not in splits or "validation" not in splits:
        fractions = (0.0 if "validation" in splits else validation, 0.0 if "test" in splits else test)
        train, held_validation, held_test = split_by_fractions(train, *fractions, seed, name)
        splits = {"validation": held_validation, "test": held_test, **splits, "train": train}
    if not len(splits["test"]):
        raise zoo.DataError(f"{name}: the test split is empty; give test images or a test fraction above 0")
    return image_dataset(
        name,
        train,
        splits["test"],
        class_names,
        pixels=pixels,
        seed=seed,
        validation=splits["validation"],
        pixel_levels=pixel_levels,
    )


class LazyImages:
    """Images read from disk only when indexed: an array-like `(N, H, W, C)` float32 in [0, 1]
    that a split larger than memory holds instead of the pixels.

    `read(rows)` gives the uint8 images `(len(rows), H, W, C)` of file rows (decoding them);
    indexing with an int, a slice or an index array of any shape reads just those rows, so the
    streamed input (zoo.training.inputs, grain's worker threads) decodes each batch as it needs
    it and the resident memory does not grow with the dataset. `take_rows` (what `Split.take`
    calls) selects rows without reading any; `np.asarray` reads them all.
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, read, rows: np.ndarray, image_shape: tuple[int, ...]):
        self.read, self.rows, self.image_shape = read, np.asarray(rows), tuple(image_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.image_shape)

    @property
    def nbytes(self) -> int:
        """What the images would take decoded (the in-memory path's cost)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        wanted = self.rows[index]
        flat = np.asarray(wanted).reshape(-1)
        pixels = self.read(flat) if len(flat) else np.zeros((0, *self.image_shape), np.uint8)
        return (pixels.astype(np.float32) / np.float32(255)).reshape(np.shape(wanted) + self.image_shape)

    def take_rows(self, index) -> "LazyImages":
        return LazyImages(self.read, self.rows[index], self.image_shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        everything = self[:]
        return everything if dtype is None else everything.astype(dtype)
