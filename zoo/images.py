"""Sample grids as PNG files (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

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


def save_grid(images: np.ndarray, path: Path, *, rows: int, row_labels: Optional[Sequence[str]] = None, title: str = "") -> Path:
    """Write images in [0, 1] as a labelled grid PNG; one row per label when labels are given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvas = np.clip(tile(np.asarray(images, np.float32), rows), 0.0, 1.0)
    height = images.shape[1] + 1
    figure, axis = plt.subplots(figsize=(max(3.0, canvas.shape[1] / 12), max(3.0, canvas.shape[0] / 12)), dpi=100)
    shown = canvas[..., 0] if canvas.shape[-1] == 1 else canvas
    axis.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    axis.set_xticks([])
    if row_labels:
        axis.set_yticks([r * height + (height - 1) / 2 for r in range(len(row_labels))], list(row_labels))
    else:
        axis.set_yticks([])
    if title:
        axis.set_title(title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return Path(path)
