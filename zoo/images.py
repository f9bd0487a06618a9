"""Images tiled into one array: the grid a figure (zoo.evaluation.plots) or TensorBoard shows."""

from __future__ import annotations


import numpy as np


def tile(images: np.ndarray, rows: int) -> np.ndarray:
    """(N, H, W, C) images tiled into one (rows*H, cols*W, C) array, row-major, 1-pixel gaps."""
    count, height, width, channels = images.shape
    cols = -(-count // rows)
    canvas = np.ones((rows * (height + 1) - 1, cols * (width + 1) - 1, channels), np.float32)
    for index, image in enumerate(images):
        r, c = divmod(index, cols)
        canvas[r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width] = image
    return canvas
