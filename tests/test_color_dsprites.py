"""Colour dSprites: each image is the shape's coverage in its colour, the colour a sixth factor,
8-bit; checked against hand-computed areas and hues; and the suite your_data loads."""

from __future__ import annotations

import colorsys
import math

import numpy as np

from zoo.evaluation import bench


def test_each_shape_is_painted_in_its_colour_factor(registry):
    dataset = registry.build(
        "dataset", {"name": "color_dsprites", "num_images": 300, "validation_size": 20, "test_size": 40}
    )
    assert dataset.image_shape == (64, 64, 3) and dataset.pixel_levels == 256
    assert dataset.factor_names[-1] == "colour" and dataset.factor_sizes == (3, 6, 10, 16, 16, 6)
    images, factors = dataset.train.images, dataset.train.factors
    np.testing.assert_allclose(images * 255, np.round(images * 255), atol=1e-3)  # 8-bit values
    for image, row in zip(images[:40], factors[:40]):
        brightest = image.reshape(-1, 3)[image.sum(axis=-1).argmax()]
        hue = colorsys.rgb_to_hsv(*brightest)[0]
        assert math.isclose(hue, row[5] / 6, abs_tol=0.01) or (row[5] == 0 and hue > 0.99)
    # A square at the largest scale: corners on a disc of radius 0.2 * 64 = 12.8 pixels, area 2 r^2 = 327.68.
    largest_squares = (factors[:, 0] == 0) & (factors[:, 1] == 5)
    coverage = images[largest_squares].max(axis=-1).sum(axis=(1, 2))
    np.testing.assert_allclose(coverage, 327.68, rtol=0.02)


def test_the_your_data_suite_loads_with_three_seeds_each(book):
    suite = bench.load_suite("your_data", book)
    runs = bench.expand(suite)
    assert sorted({r.variant for r in runs}) == [
        "cvae_conv_your_images",
        "vae_conv_color_dsprites",
        "vae_conv_your_images",
    ]
    assert len(runs) == 9
