"""Write the folder of labelled colour images the suite your_data trains on through the
`images` dataset: colour dSprites (plugins/datasets/color_dsprites.py) as 64x64 PNGs, one
subfolder per shape (square, ellipse, heart), written by Pillow.

    python benchmarks/your_data_images.py [--out benchmarks/data/your_data_images] [--count 3000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(out: Path, count: int, seed: int = 1) -> Path:
    """`count` colour dSprites as PNGs under out/<shape>/ (a seed apart from the suite's own colour_dsprites)."""
    from vae_zoo_plugins.datasets.color_dsprites import make_color_dsprites

    dataset = make_color_dsprites(num_images=count, validation_size=0, test_size=1, seed=seed)
    everything = np.concatenate([dataset.train.images, dataset.test.images])
    labels = np.concatenate([dataset.train.labels, dataset.test.labels])
    for index, (image, label) in enumerate(zip(everything, labels)):
        folder = out / dataset.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{index:05d}.png")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/data/your_data_images")
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    print(write_folder(Path(args.out), args.count))
