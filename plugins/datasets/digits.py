"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (real data, offline)."""

from __future__ import annotations

import functools
from typing import Annotated

import numpy as np

import zoo
from zoo import AtLeast
from zoo.core.data import PixelMode, Seed, image_dataset


@functools.lru_cache(maxsize=1)
def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, images (1797, 8, 8) of counts 0-16 and their digits (1797,): what
    `sklearn.datasets.load_digits()` returns, read from the file scikit-learn ships. Read-only,
    and kept for the next call: parsing the text takes 40 ms, and a process builds its dataset
    more than once.

    Importing scikit-learn took 2.3 s here, a sixth of the time `zoo train` took to start on the
    default dataset; the file is found without importing it. Should a release of scikit-learn
    move the file, its loader is used.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    shipped = (
        Path(list(spec.submodule_search_locations or [""])[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    )
    if shipped is None or not shipped.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, digits = bunch.images, bunch.target
    else:
        table = np.loadtxt(shipped, delimiter=",")  # 64 pixels, then the digit, per row
        images, digits = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
    for array in (images, digits):
        array.flags.writeable = False
    return images, digits


def make_digits(
    validation_size: Annotated[int, AtLeast(0)] = 300,
    test_size: Annotated[int, AtLeast(1)] = 360,
    seed: Seed = 0,
    pixels: PixelMode = "dynamic_binarize",
) -> zoo.Dataset:
    """1797 8x8 digits from scikit-learn, intensities in [0, 1], binarized per batch by default.

    >>> ds = make_digits(); ds.image_shape  # doctest: +SKIP
    (8, 8, 1)
    """
    pixels_0_to_16, digits = read_digits()
    images = (pixels_0_to_16 / 16.0).astype(np.float32)[..., None]
    labels = digits.astype(np.int32)
    if not 0 < test_size < len(images) - validation_size:
        raise zoo.DataError(
            f"digits: test_size {test_size} with validation_size {validation_size} leaves no training data out of {len(images)} images"
        )
    # scikit-learn ships no test split: hold one out by a fixed permutation.
    order = np.random.default_rng(seed).permutation(len(images))
    test, rest = np.sort(order[:test_size]), np.sort(order[test_size:])
    return image_dataset(
        "digits",
        zoo.Split(images[rest], labels[rest]),
        zoo.Split(images[test], labels[test]),
        [str(d) for d in range(10)],
        pixels=pixels,
        validation_size=validation_size,
        seed=seed,
    )


@zoo.hookimpl
def register_components(register):
    """The digits dataset."""
    register("dataset", "digits", make_digits)
