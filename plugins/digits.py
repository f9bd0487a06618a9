"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (real data, offline)."""

from __future__ import annotations

import numpy as np

import zoo


def make_digits(validation_size: int = 300, test_size: int = 360, seed: int = 0) -> zoo.Dataset:
    """1797 8x8 digits from scikit-learn, pixels scaled to [0, 1], split by a fixed seed.

    >>> ds = make_digits(); ds.image_shape  # doctest: +SKIP
    (8, 8, 1)
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    labels = bunch.target.astype(np.int32)
    if validation_size + test_size >= len(images):
        raise zoo.DataError(
            f"digits: validation_size {validation_size} + test_size {test_size} leave no training data "
            f"out of {len(images)} images"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    test, validation, train = np.split(order, [test_size, test_size + validation_size])
    return zoo.Dataset(
        name="digits",
        train=zoo.Split(images[train], labels[train]),
        validation=zoo.Split(images[validation], labels[validation]),
        test=zoo.Split(images[test], labels[test]),
        class_names=[str(d) for d in range(10)],
    )


@zoo.hookimpl
def register_components(register):
    """The digits dataset."""
    register("dataset", "digits", make_digits)
