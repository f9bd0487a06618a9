"""`images`: a folder (or a glob) of PNG, JPEG, BMP, GIF or WebP files, read with Pillow.

Layout, as torchvision's ImageFolder and TFDS's ImageFolder have it: with `labels: folders` the
first-level subfolders are the classes (sorted names); `train/`, `validation/` and `test/`
subfolders, when present, are the splits, each laid out the same way. Without them the
validation and test splits are held out of all images by seeded fractions.

Files are read twice, headers first: sizes and colour modes are checked before any pixel is
decoded, so a mistake in the 10,000th file is reported at once.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np

import zoo
from vae_zoo_plugins.datasets.own_data import EIGHT_BIT_LEVELS, Fraction, LazyImages, own_dataset
from zoo.core.data import PixelMode, Seed

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
SPLIT_FOLDERS = ("train", "validation", "test")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
Labels = Literal["folders", "none", "auto"]
Decode = Literal["eager", "lazy", "auto"]
# With decode: auto, images stay on disk when decoded they would pass train.memory_budget_mb's default.
LAZY_ABOVE_BYTES = 2048 * 2**20
Channels = Union[Literal[1, 3], Literal["auto"]]


def image_files(path: str) -> tuple[Path, list[Path]]:
    """(root, image files under it, sorted): a folder searched recursively, or a glob whose root is
    the folder before its first wildcard."""
    if glob.has_magic(path):
        root = Path(path.split("*")[0].split("?")[0].split("[")[0])
        root = root if str(root).endswith(os.sep) and root.is_dir() else root.parent
        files = [Path(p) for p in glob.glob(path, recursive=True)]
    else:
        root = Path(path)
        if not root.is_dir():
            raise zoo.DataError(f"images: {path} is not a folder (nor a glob such as 'photos/*.jpg')")
        files = [p for p in root.rglob("*")]
    files = sorted(p for p in files if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise zoo.DataError(f"images: no image files ({', '.join(EXTENSIONS)}) under {path}")
    return root, files


def split_of(root: Path, files: list[Path]) -> dict[str, tuple[Path, list[Path]]]:
    """Split name -> (its root, its files): by train/validation/test subfolders when train/ exists,
    else everything is train."""
    firsts = {f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1}
    if "train" not in firsts:
        return {"train": (root, files)}
    stray = [f for f in files if f.relative_to(root).parts[0] not in SPLIT_FOLDERS]
    if stray:
        raise zoo.DataError(
            f"images: {root} has train/ but also {stray[0]} outside train/, validation/ and test/; "
            "move it into one of them"
        )
    return {
        name: (root / name, [f for f in files if f.relative_to(root).parts[0] == name])
        for name in SPLIT_FOLDERS
        if name in firsts
    }


def class_of(root: Path, file: Path) -> Optional[str]:
    """The first-level subfolder a file lies in, None for a file directly in root."""
    parts = file.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def label_names(splits: dict[str, tuple[Path, list[Path]]], labels: str) -> list[str]:
    """The classes (sorted first-level subfolder names of every split), [] for labels: none."""
    folders = {name: [class_of(root, f) for f in files] for name, (root, files) in splits.items()}
    if labels == "auto":
        labels = "folders" if any(c is not None for found in folders.values() for c in found) else "none"
    if labels == "none":
        return []
    for name, (root, files) in splits.items():
        unlabelled = [f for f, c in zip(files, folders[name]) if c is None]
        if unlabelled:
            raise zoo.DataError(
                f"images: labels come from subfolders, but {len(unlabelled)} of {len(files)} images lie directly "
                f"in {root} (e.g. {unlabelled[0].name}); move them into a class folder, or set labels: none"
            )
    return sorted({c for found in folders.values() for c in found if c is not None})


def headers(files: Sequence[Path]) -> list[tuple[tuple[int, int], bool]]:
    """((width, height), is grey) of each file, from its header alone."""
    from PIL import Image, UnidentifiedImageError

    found = []
    for file in files:
        try:
            with Image.open(file) as image:
                found.append((image.size, image.mode in GREY_MODES))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise zoo.DataError(f"images: cannot read {file}: {exc}") from None
    return found


def choose_channels(files: Sequence[Path], greys: Sequence[bool], channels: Union[int, str]) -> int:
    """1 or 3: as asked, else what every file is; grey and colour mixed is refused naming one of each."""
    if channels != "auto":
        return int(channels)
    if all(greys):
        return 1
    if not any(greys):
        return 3
    grey = files[greys.index(True)]
    colour = files[greys.index(False)]
    raise zoo.DataError(
        f"images: grey and colour images mixed ({grey} is grey, {colour} is colour); "
        "set channels: 1 or channels: 3 to convert them all"
    )


def check_sizes(files: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> None:
    """Without `size`, every image must have the first's size: refused naming two files that differ."""
    for file, found in zip(files, sizes):
        if found != sizes[0]:
            raise zoo.DataError(
                f"images: sizes differ ({files[0]} is {sizes[0][0]}x{sizes[0][1]}, {file} is {found[0]}x{found[1]}, "
                "width x height); set size: [H, W] to resize them all"
            )


def decode(file: Path, channels: int, size: Optional[tuple[int, int]]) -> np.ndarray:
    """One image (H, W, channels) uint8, converted and resized with antialiasing (Lanczos)."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS, reducing_gap=3.0)
            pixels = np.asarray(image, np.uint8)
    except (OSError, ValueError) as exc:  # a truncated or corrupt file whose header read well
        raise zoo.DataError(f"images: cannot read {file}: {exc}") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)


def read_split(
    root: Path, files: list[Path], class_names: list[str], channels: int, size: Optional[tuple[int, int]], lazy: bool
) -> zoo.Split:
    """One split with its class indices (0 without classes): every file decoded, or with `lazy`
    images decoded only when a batch asks for them (LazyImages)."""
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[class_of(root, f)] if class_names else 0 for f in files], np.int32)  # type: ignore[index]
    read = lambda rows: np.stack([decode(files[int(row)], channels, size) for row in rows])
    if lazy:
        first = read([0])
        return zoo.Split(LazyImages(read, np.arange(len(files)), first.shape[1:]), labels)
    return zoo.Split(read(range(len(files))).astype(np.float32) / np.float32(255), labels)


def decoded_bytes(files: Sequence[Path], found, channels: int, size: Optional[tuple[int, int]]) -> int:
    """What the images would take decoded as float32."""
    height, width = size if size is not None else (found[0][0][1], found[0][0][0])
    return len(files) * height * width * channels * 4


def make_images(
    path: str,
    labels: Labels = "auto",
    size: Optional[Sequence[int]] = None,
    channels: Channels = "auto",
    validation: Fraction = 0.1,
    test: Fraction = 0.1,
    seed: Seed = 0,
    pixels: PixelMode = "grayscale",
    decode: Decode = "auto",
) -> zoo.Dataset:
    """Images from a folder or glob, 8-bit, in [0, 1]: classes from subfolders, splits from
    train/validation/test subfolders or seeded fractions. `decode: lazy` keeps them on disk, each
    batch decoded when training streams it (`auto`: when decoded they would pass 2 GiB).

    >>> make_images("photos/", size=[64, 64], channels=3)  # doctest: +SKIP
    """
    if labels not in ("folders", "none", "auto"):
        raise ValueError(f"labels: expected folders, none or auto, got {labels!r}")
    if decode not in ("eager", "lazy", "auto"):
        raise ValueError(f"decode: expected eager, lazy or auto, got {decode!r}")
    if channels not in (1, 3, "auto"):
        raise ValueError(f"channels: expected 1, 3 or auto, got {channels!r}")
    if size is not None and (len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size)):
        raise ValueError(f"size: expected [height, width], two positive ints, got {list(size)}")
    root, files = image_files(str(path))
    splits = split_of(root, files)
    class_names = label_names(splits, labels)
    found = headers(files)
    chosen = choose_channels(files, [grey for _, grey in found], channels)
    if size is None:
        check_sizes(files, [dims for dims, _ in found])
    target = None if size is None else (int(size[0]), int(size[1]))
    lazy = decode == "lazy" or (decode == "auto" and decoded_bytes(files, found, chosen, target) > LAZY_ABOVE_BYTES)
    if lazy and pixels != "grayscale":
        raise ValueError(f"pixels: {pixels} binarizes every image up front; images decoded lazily need grayscale")
    read = {name: read_split(r, f, class_names, chosen, target, lazy) for name, (r, f) in splits.items()}
    return own_dataset(
        "images",
        read,
        class_names,
        validation=validation,
        test=test,
        seed=seed,
        pixels=pixels,
        pixel_levels=EIGHT_BIT_LEVELS,
    )


make_images.conformance = {"files": "images", "path_option": "path"}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """The images dataset (a folder of image files)."""
    register("dataset", "images", make_images)
