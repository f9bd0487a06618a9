"""dSprites-style shapes (Matthey et al. 2017), generated in numpy: images of one white shape on
black whose ground-truth factors of variation are known, for the disentanglement metrics.

Factors, each an index into evenly spaced values:

- `shape`: square, ellipse, heart (also the class label);
- `scale`: the shape's size, `scales` values from 0.5 to 1 of the largest;
- `orientation`: `orientations` angles over [0, 2 pi). The square looks the same every quarter
  turn and the ellipse every half turn, so for them angles a quarter (half) turn apart give the
  same image: no code can recover those orientations, as in dSprites;
- `position_x`, `position_y`: `positions` values each, chosen so that the largest shape always
  lies wholly inside the image.

Images are 32x32 by default (dSprites is 64x64): a quarter of the pixels keeps training on two CPU
cores feasible, and the smallest shape still spans a disc 6.4 pixels across. Each pixel is the fraction
of it the shape covers (4x4 samples per pixel), so orientation shows at this size; by default
they are then binarized as the zoo's other datasets are (`pixels`), which makes the Bernoulli
likelihood a proper one. The dataset is the full product of the factors' values (`num_images:
null`) or a sample of `num_images` distinct combinations drawn with `seed`: the same seed gives
the same images, offline.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Optional

import numpy as np

import zoo
from zoo import AtLeast
from zoo.core.data import PixelMode, Seed, image_dataset

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
SUPERSAMPLING = 4  # samples per pixel along each axis
LARGEST_RADIUS = 0.2  # of the image width: the radius of the disc the largest shape fits in
CHUNK = 256  # images rendered at once (bounds the memory of the sample grids)


def inside_shape(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v) lie in the shape, in coordinates where the shape fits the unit disc
    (v points down the image)."""
    if shape == 0:  # a square whose corners touch the disc
        return np.maximum(np.abs(u), np.abs(v)) <= 1 / math.sqrt(2)
    if shape == 1:  # an ellipse twice as long as it is wide
        return u**2 + (v / 0.5) ** 2 <= 1.0
    # The heart (x^2 + y^2 - 1)^3 <= x^2 y^3 spans a disc of radius 1.337 around (0, 0.118).
    x, y = 1.337 * u, 0.118 - 1.337 * v
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def factor_values(scales: int, orientations: int, positions: int) -> dict[str, np.ndarray]:
    """The value of each index of each continuous factor: scale (of the largest), angle
    (radians), and position (the centre, as a fraction of the image width)."""
    return {
        "scale": np.linspace(0.5, 1.0, scales) if scales > 1 else np.ones(1),
        "orientation": 2 * np.pi * np.arange(orientations) / orientations,
        "position": np.linspace(LARGEST_RADIUS, 1 - LARGEST_RADIUS, positions) if positions > 1 else np.full(1, 0.5),
    }


def render(factors: np.ndarray, image_size: int, values: dict[str, np.ndarray]) -> np.ndarray:
    """Images `(N, size, size, 1)` float32 in [0, 1] (each pixel's covered fraction) of factor rows
    `(N, 5)` (indices, in the order of FACTOR_NAMES)."""
    # Only a window around each shape is sampled: the largest shape's disc, and a pixel either side.
    window = min(image_size, math.ceil(2 * LARGEST_RADIUS * image_size) + 2)
    offsets = (
        np.arange(window * SUPERSAMPLING, dtype=np.float32) + 0.5
    ) / SUPERSAMPLING  # in pixels, from the window's corner
    local_x, local_y = (a.ravel()[None] for a in np.meshgrid(offsets, offsets))  # rows are y
    images = np.zeros((len(factors), image_size, image_size, 1), np.float32)
    for start in range(0, len(factors), CHUNK):
        rows = factors[start : start + CHUNK]
        centre_x, centre_y = (values["position"][rows[:, column]] * image_size for column in (3, 4))
        corner_x, corner_y = (
            np.clip(np.floor(c - window / 2), 0, image_size - window).astype(int) for c in (centre_x, centre_y)
        )
        dx, dy = local_x + (corner_x - centre_x)[:, None], local_y + (corner_y - centre_y)[:, None]
        radius = (LARGEST_RADIUS * image_size * values["scale"][rows[:, 1]])[:, None]
        angle = values["orientation"][rows[:, 2]][:, None]
        # Rotate the sample points by -angle about the centre: the shape turns by +angle.
        u = ((np.cos(angle) * dx + np.sin(angle) * dy) / radius).astype(np.float32)
        v = ((-np.sin(angle) * dx + np.cos(angle) * dy) / radius).astype(np.float32)
        covered = np.zeros(u.shape, bool)
        for shape in range(len(SHAPES)):
            mine = rows[:, 0] == shape
            covered[mine] = inside_shape(shape, u[mine], v[mine])
        patches = covered.reshape(len(rows), window, SUPERSAMPLING, window, SUPERSAMPLING).mean(axis=(2, 4))
        for index, (patch, x, y) in enumerate(zip(patches, corner_x, corner_y)):
            images[start + index, y : y + window, x : x + window, 0] = patch
    return images


def draw_factors(sizes: tuple[int, ...], num_images: Optional[int], seed: int) -> np.ndarray:
    """Factor rows `(N, F)` int32 in a random order (so the first rows of a split are a uniform
    sample of it): every combination, or `num_images` distinct ones, drawn with `seed`."""
    total = math.prod(sizes)
    rng = np.random.default_rng(seed)
    if num_images is None:
        chosen = rng.permutation(total)
    elif num_images > total:
        raise zoo.DataError(
            f"dsprites: num_images {num_images} exceeds the {total} distinct combinations of the "
            f"factors {dict(zip(FACTOR_NAMES, sizes))}; ask for fewer, or null for all of them"
        )
    else:
        chosen = rng.choice(total, size=num_images, replace=False)
    return np.stack(np.unravel_index(chosen, sizes), axis=1).astype(np.int32)


@functools.lru_cache(maxsize=2)
def generate(
    image_size: int, sizes: tuple[int, ...], num_images: Optional[int], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(images, factors) of every image, read-only; kept for the next call with the same options
    (rendering 10000 images takes seconds, and a process builds its dataset more than once)."""
    factors = draw_factors(sizes, num_images, seed)
    images = render(factors, image_size, factor_values(*sizes[1:4]))
    for array in (images, factors):
        array.flags.writeable = False
    return images, factors


Count = Annotated[int, AtLeast(1)]


def make_dsprites(
    image_size: Annotated[int, AtLeast(8)] = 32,
    scales: Count = 6,
    orientations: Count = 10,
    positions: Count = 16,
    num_images: Optional[Count] = 10000,
    validation_size: Annotated[int, AtLeast(0)] = 1000,
    test_size: Count = 2000,
    seed: Seed = 0,
    pixels: PixelMode = "dynamic_binarize",
) -> zoo.Dataset:
    """Shapes with five known factors (shape, scale, orientation, position_x, position_y).

    >>> ds = make_dsprites(); ds.factor_names, ds.factor_sizes  # doctest: +SKIP
    (('shape', 'scale', 'orientation', 'position_x', 'position_y'), (3, 6, 10, 16, 16))
    """
    for option, value, least in (
        ("image_size", image_size, 8),
        ("scales", scales, 1),
        ("orientations", orientations, 1),
        ("positions", positions, 1),
        ("test_size", test_size, 1),
        ("validation_size", validation_size, 0),
    ):
        if not value >= least:
            raise ValueError(f"{option}: expected an int >= {least}, got {value}")
    sizes = (len(SHAPES), scales, orientations, positions, positions)
    images, factors = generate(image_size, sizes, num_images, seed)
    if not test_size + validation_size < len(factors):
        raise zoo.DataError(
            f"dsprites: test_size {test_size} with validation_size {validation_size} leaves no training "
            f"data out of {len(factors)} images"
        )
    # The rows are in a random order already: the test split is the first test_size of them.
    everything = zoo.Split(images, factors[:, 0].copy(), factors)
    test, rest = everything.take(slice(test_size)), everything.take(slice(test_size, None))
    return image_dataset(
        "dsprites",
        rest,
        test,
        SHAPES,
        pixels=pixels,
        validation_size=validation_size,
        seed=seed,
        factor_names=FACTOR_NAMES,
        factor_sizes=sizes,
    )


@zoo.hookimpl
def register_components(register):
    """The dSprites-style shapes dataset."""
    register("dataset", "dsprites", make_dsprites)
