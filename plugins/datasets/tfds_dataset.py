"""`tfds`: any TFDS builder by name (`builder: cifar10`), read from a prepared directory.

The directory is `--data-dir` (or the recipe's `source_dir`, as the MNIST family has it), else
TFDS's own default ($TFDS_DATA_DIR or ~/tensorflow_datasets). A dataset prepared there
(`tfds build cifar10 --data_dir DIR`, or by any earlier run) is read back from its files alone,
with TFDS's data source and no TensorFlow; nothing is downloaded unless the recipe says
`download: true`. Images come from the feature `image_key`, labels from `label_key` (a
ClassLabel gives the class names); the splits are TFDS's `train`, `validation` and `test`, a
missing validation or test split held out of train by its fraction.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal, Optional

import numpy as np

import zoo
from vae_zoo_plugins.datasets.own_data import (
    EIGHT_BIT_LEVELS,
    Fraction,
    LazyImages,
    as_images,
    as_labels,
    numbered_class_names,
    own_dataset,
    to_unit_interval,
)
from vae_zoo_plugins.datasets.tfds_scratch import no_stray_tfds_dirs
from zoo.core.data import PixelMode, Seed

SPLITS = ("train", "validation", "test")


def default_data_dir() -> Path:
    """TFDS's own default: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


def prepared_version(root: Path, builder: str) -> Optional[Path]:
    """The newest prepared version directory of `builder` under root (any config), or None."""
    found = [info.parent for info in (root / builder).glob("**/dataset_info.json")]
    if not found:
        return None
    return max(found, key=lambda p: tuple(int(n) if n.isdigit() else 0 for n in p.name.split(".")))


def known_builders() -> list[str]:
    import tensorflow_datasets as tfds

    return list(tfds.list_builders(with_community_datasets=False))


def unknown_builder(builder: str, known: list[str]) -> zoo.DataError:
    closest = difflib.get_close_matches(builder, known, n=3, cutoff=0.5)
    hint = f"closest: {', '.join(closest)}" if closest else "see tfds.list_builders()"
    return zoo.DataError(f"tfds: unknown builder {builder!r} ({hint})")


def prepare(builder: str, root: Path, download: bool) -> Path:
    """Prepare `builder` under root (downloading) when allowed; refused with the command otherwise."""
    known = known_builders()
    if builder not in known:
        raise unknown_builder(builder, known)
    command = f"tfds build {builder} --data_dir {root} --file_format array_record"
    if not download:
        raise zoo.DataError(
            f"tfds: {builder} is not prepared under {root}; prepare it with `{command}` "
            "(or set download: true in the dataset's options)"
        )
    import tensorflow_datasets as tfds

    try:
        with no_stray_tfds_dirs():
            tfds.builder(builder, data_dir=str(root), file_format="array_record").download_and_prepare()
    except Exception as exc:  # TFDS's own failures: offline, TensorFlow needed, disk full
        raise zoo.DataError(f"tfds: preparing {builder} failed ({type(exc).__name__}: {exc}); try `{command}`") from exc
    version = prepared_version(root, builder)
    assert version is not None, f"TFDS prepared {builder} but wrote no dataset_info.json under {root}"
    return version


CHUNK = 1024  # records read at once when the images stay on disk (their labels are read up front)
LAZY_ABOVE_BYTES = 2048 * 2**20  # as the images dataset: train.memory_budget_mb's default


def check_features(record: dict, image_key: str, label_key: Optional[str], where: str) -> None:
    for key in (image_key, label_key):
        if key is not None and key not in record:
            raise zoo.DataError(f"{where}: no feature {key!r}; features: {', '.join(sorted(record))}")


def read_split(source, image_key: str, label_key: Optional[str], where: str, lazy: bool):
    """(images, labels or None) of one split: every record read at once, or with `lazy` the labels
    read in chunks and the images a LazyImages reading records when a batch asks for them."""
    if not len(source):
        raise zoo.DataError(f"{where}: the split is empty")
    first = source.__getitems__([0])[0]
    check_features(first, image_key, label_key, where)
    if not lazy:
        records = source.__getitems__(list(range(len(source))))
        images = np.stack([np.asarray(r[image_key]) for r in records])
        return images, None if label_key is None else np.asarray([r[label_key] for r in records])
    labels = None
    if label_key is not None:
        chunks = (
            source.__getitems__(list(range(i, min(i + CHUNK, len(source))))) for i in range(0, len(source), CHUNK)
        )
        labels = np.asarray([r[label_key] for chunk in chunks for r in chunk])
    read = lambda rows: np.stack([np.asarray(r[image_key]) for r in source.__getitems__([int(i) for i in rows])])
    shape = np.asarray(first[image_key]).shape
    shape = shape + (1,) if len(shape) == 2 else shape
    if np.asarray(first[image_key]).dtype != np.uint8:
        raise zoo.DataError(
            f"{where}: decode: lazy reads uint8 images; {image_key!r} is {np.asarray(first[image_key]).dtype}"
        )
    lazy_read = (lambda rows: read(rows)[..., None]) if len(np.asarray(first[image_key]).shape) == 2 else read
    return LazyImages(lazy_read, np.arange(len(source)), shape), labels


def decoded_bytes(info, split: str, image_key: str) -> int:
    """What a split's images would take decoded as float32 (0 where the feature's shape is not fixed)."""
    shape = getattr(info.features[image_key], "shape", None) if image_key in info.features else None
    if not shape or any(d is None for d in shape):
        return 0
    return int(info.splits[split].num_examples * np.prod(shape) * 4)


def make_tfds(
    builder: str,
    data_dir: Optional[str] = None,
    source_dir: Optional[str] = None,
    image_key: str = "image",
    label_key: Optional[str] = "label",
    download: bool = False,
    validation: Fraction = 0.1,
    test: Fraction = 0.1,
    seed: Seed = 0,
    pixels: PixelMode = "grayscale",
    decode: Literal["eager", "lazy", "auto"] = "auto",
) -> zoo.Dataset:
    """Any TFDS builder's images, from a prepared directory (downloaded only with download: true).
    `decode: lazy` keeps uint8 images on disk, read when training streams a batch (`auto`: above 2 GiB).

    >>> make_tfds("cifar10", source_dir="~/tensorflow_datasets")  # doctest: +SKIP
    """
    import tensorflow_datasets as tfds

    root = Path(data_dir or source_dir or default_data_dir()).expanduser()
    version = prepared_version(root, builder) or prepare(builder, root, download)
    read_only = tfds.builder_from_directory(str(version))
    sources = read_only.as_data_source()
    label_feature = read_only.info.features[label_key] if label_key in read_only.info.features else None
    label_key = label_key if label_feature is not None else None
    splits, levels = {}, set()
    for name in (s for s in SPLITS if s in read_only.info.splits):
        where = f"tfds: {builder} {name}"
        lazy = decode == "lazy" or (
            decode == "auto" and decoded_bytes(read_only.info, name, image_key) > LAZY_ABOVE_BYTES
        )
        if lazy and pixels != "grayscale":
            raise ValueError(f"pixels: {pixels} binarizes every image up front; images read lazily need grayscale")
        images, labels = read_split(sources[name], image_key, label_key, where, lazy)
        if isinstance(images, LazyImages):
            pixels_01, level = images, EIGHT_BIT_LEVELS
        else:
            pixels_01, level = to_unit_interval(as_images(images, where), where)
        splits[name] = zoo.Split(pixels_01, as_labels(labels, len(images), where))
        levels.add(level)
    if "train" not in splits:
        raise zoo.DataError(f"tfds: {builder} has no train split (splits: {', '.join(read_only.info.splits)})")
    names = list(getattr(label_feature, "names", None) or [])
    if label_key is not None and not names:
        names = numbered_class_names(splits)
    return own_dataset(
        builder,
        splits,
        names,
        validation=validation,
        test=test,
        seed=seed,
        pixels=pixels,
        pixel_levels=levels.pop() if len(levels) == 1 else None,
    )


make_tfds.conformance = {"files": "tfds", "options": {"builder": "zoo_tiny_colours"}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """Any TFDS builder's images."""
    register("dataset", "tfds", make_tfds)
