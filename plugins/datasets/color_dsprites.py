"""Colour dSprites: the procedural dSprites shapes (plugins/datasets/dsprites.py) at 64x64x3, each
shape painted in one of `colours` colours, the colour a sixth ground-truth factor (as
disentanglement_lib's colour dSprites varies the sprite's colour; here it takes evenly spaced
hues at full saturation, so each value is told apart and the factor is discrete like the others).

Pixels are the shape's coverage times its colour on black, rounded to 8 bits: the data is 8-bit
(`pixel_levels` 256), for the discretized logistic mixture and bits/dim.
"""

from __future__ import annotations

import colorsys
import functools
import math
from typing import Annotated, Optional

import numpy as np

import zoo
from vae_zoo_plugins.datasets.dsprites import FACTOR_NAMES, SHAPES, draw_factors, factor_values, render
from vae_zoo_plugins.datasets.own_data import EIGHT_BIT_LEVELS
from zoo import AtLeast
from zoo.core.data import Seed, image_dataset

COLOUR_FACTOR_NAMES = (*FACTOR_NAMES, "colour")
Count = Annotated[int, AtLeast(1)]


def palette(colours: int) -> np.ndarray:
    """(colours, 3) RGB in [0, 1]: evenly spaced hues, full saturation and value (red first)."""
    return np.array([colorsys.hsv_to_rgb(k / colours, 1.0, 1.0) for k in range(colours)], np.float32)


@functools.lru_cache(maxsize=1)
def generate(
    image_size: int, sizes: tuple[int, ...], num_images: Optional[int], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, size, size, 3) float32 at k / 255, factors (N, 6)), read-only; kept for the next call."""
    factors = draw_factors(sizes, num_images, seed)
    coverage = render(factors[:, :5], image_size, factor_values(*sizes[1:4]))
    images = coverage * palette(sizes[5])[factors[:, 5]][:, None, None, :]
    images = np.round(images * 255) / np.float32(255)
    for array in (images, factors):
        array.flags.writeable = False
    return images.astype(np.float32), factors


def make_color_dsprites(
    image_size: Annotated[int, AtLeast(8)] = 64,
    scales: Count = 6,
    orientations: Count = 10,
    positions: Count = 16,
    colours: Count = 6,
    num_images: Optional[Count] = 4000,
    validation_size: Annotated[int, AtLeast(0)] = 400,
    test_size: Count = 800,
    seed: Seed = 0,
) -> zoo.Dataset:
    """dSprites in colour at 64x64x3 with six known factors (the five of dsprites and colour), 8-bit.

    >>> ds = make_color_dsprites(num_images=200, validation_size=20, test_size=40); ds.image_shape  # doctest: +SKIP
    (64, 64, 3)
    """
    sizes = (len(SHAPES), scales, orientations, positions, positions, colours)
    if num_images is not None and num_images > math.prod(sizes):
        raise zoo.DataError(f"color_dsprites: num_images {num_images} exceeds the {math.prod(sizes)} combinations")
    images, factors = generate(image_size, sizes, num_images, seed)
    if not test_size + validation_size < len(factors):
        raise zoo.DataError(
            f"color_dsprites: test_size {test_size} with validation_size {validation_size} leaves no training "
            f"data out of {len(factors)} images"
        )
    everything = zoo.Split(images, factors[:, 0].copy(), factors)  # rows are in a random order already
    test, rest = everything.take(slice(test_size)), everything.take(slice(test_size, None))
    return image_dataset(
        "color_dsprites",
        rest,
        test,
        SHAPES,
        validation_size=validation_size,
        seed=seed,
        factor_names=COLOUR_FACTOR_NAMES,
        factor_sizes=sizes,
        pixel_levels=EIGHT_BIT_LEVELS,
    )


make_color_dsprites.conformance = {  # type: ignore[attr-defined]  # a small sample keeps the suite fast
    "options": {"image_size": 16, "num_images": 60, "validation_size": 10, "test_size": 10}
}


@zoo.hookimpl
def register_components(register):
    """The colour dSprites dataset."""
    register("dataset", "color_dsprites", make_color_dsprites)
