"""MNIST, Fashion-MNIST, KMNIST and binarized MNIST through tensorflow-datasets.

TFDS's own MNIST builders need TensorFlow even with local files, so the zoo
has small `GeneratorBasedBuilder`s of its own that read the IDX files the zoo
located (or download them), are prepared once as array_record under a cache
directory keyed by a hash of the files, and are read back with TFDS's data
source: no TensorFlow at all.

Offline, the files come from a directory (`--data-dir` or the recipe's
`source_dir`; Debian's `dataset-fashion-mnist` installs Fashion-MNIST under
/usr/share/datasets/fashion-mnist). With none there, the zoo says at once what
to install or pass; it downloads only when the recipe says `download: true`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import numpy as np

import zoo
from vae_zoo_plugins.datasets import idx
from vae_zoo_plugins.datasets.tfds_scratch import no_stray_tfds_dirs
from zoo import AtLeast
from zoo.core.data import PixelMode, Seed, image_dataset
from zoo.files import held_exclusively

CACHE_ENV = "VAE_ZOO_CACHE"


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one dataset's files live and what they hold."""

    name: str
    builder: str
    class_names: tuple[str, ...]
    local_dirs: tuple[str, ...]
    url: str
    how_to_get: str


DIGITS = tuple(str(d) for d in range(10))
SOURCES = {
    "mnist": Source(
        "mnist",
        "zoo_mnist",
        DIGITS,
        ("/usr/share/datasets/mnist",),
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "pass --data-dir DIR holding train-images-idx3-ubyte.gz and the other three MNIST IDX files",
    ),
    "fashion_mnist": Source(
        "fashion_mnist",
        "zoo_fashion_mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ("/usr/share/datasets/fashion-mnist",),
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "install Debian's package (apt-get install dataset-fashion-mnist) or pass --data-dir DIR holding its four IDX files",
    ),
    "kmnist": Source(
        "kmnist",
        "zoo_kmnist",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        (),
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "pass --data-dir DIR holding the four KMNIST IDX files (train-images-idx3-ubyte.gz, ...)",
    ),
}
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
AMAT_FILES = {
    "train": "binarized_mnist_train.amat",
    "validation": "binarized_mnist_valid.amat",
    "test": "binarized_mnist_test.amat",
}


def default_cache_dir() -> Path:
    """Where prepared datasets are kept: $VAE_ZOO_CACHE or ~/.cache/vae-zoo/tfds."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vae-zoo" / "tfds")


@functools.cache
def builder_classes() -> dict[str, type]:
    """The zoo's TFDS builders, defined on first use so `zoo list` does not import TFDS."""
    import tensorflow_datasets as tfds

    class InZoosWords(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
        """A builder that says what it does in the zoo's words, on stderr: TFDS prints
        'Downloading and preparing dataset Unknown size (download: Unknown size, ...)' on stdout,
        also when it only reads local files, and the JSON a command prints would follow it."""

        zoo_files: Optional[dict] = None  # the local source files, set by prepared_arrays; None: downloaded

        def _log_download_bytes(self):
            if self.zoo_files:
                source = f"from the files in {Path(next(iter(self.zoo_files.values()))).parent}"
            else:
                source = "downloading its files first"
            say(
                f"{self.zoo_dataset}: preparing a copy once, {source}, under {self.data_dir}; later runs read that copy"
            )

        def _log_download_done(self):
            say(f"{self.zoo_dataset}: prepared")

    class IdxImages(InZoosWords, skip_registration=True):  # type: ignore[call-arg]
        """28x28 grayscale images and labels from four IDX files (local, or downloaded)."""

        VERSION = tfds.core.Version("1.0.0")
        SOURCE: Source

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.Tensor(shape=(), dtype=np.int64),
                }
            )
            # No shuffling: records keep the files' order, so the test set is the published one, in order.
            return self.dataset_info_from_configs(
                features=features, supervised_keys=("image", "label"), disable_shuffling=True
            )

        def _split_generators(self, dl_manager):
            # zoo_files: the local IDX files by stem, set by prepared_arrays; else download them.
            files = self.zoo_files or dl_manager.download({stem: f"{self.SOURCE.url}{stem}.gz" for stem in IDX_STEMS})
            return {"train": self._generate_examples(files, "train"), "test": self._generate_examples(files, "t10k")}

        def _generate_examples(self, files, prefix):
            images, labels = read_28x28(
                Path(files[f"{prefix}-images-idx3-ubyte"]), Path(files[f"{prefix}-labels-idx1-ubyte"])
            )
            for index in range(len(images)):
                yield index, {"image": images[index], "label": int(labels[index])}

    class BinarizedMnist(InZoosWords, skip_registration=True):  # type: ignore[call-arg]
        """Larochelle's fixed binarisation of MNIST from its three .amat files."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict({"image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8)})
            return self.dataset_info_from_configs(features=features, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(self.zoo_files[split]) for split in AMAT_FILES}

        def _generate_examples(self, path):
            for index, image in enumerate(read_amat(path)):
                yield index, {"image": image}

    classes = {}
    for source in SOURCES.values():
        name = "".join(part.title() for part in source.builder.split("_"))
        classes[source.name] = type(
            name, (IdxImages,), {"SOURCE": source, "name": source.builder, "__module__": __name__}
        )
    classes["binarized_mnist"] = type(
        "ZooBinarizedMnist", (BinarizedMnist,), {"name": "zoo_binarized_mnist", "__module__": __name__}
    )
    return classes


def _has_idx(directory: Path, stem: str) -> bool:
    try:
        idx.find(directory, stem)
        return True
    except zoo.DataError:
        return False


def read_amat(path: Path) -> np.ndarray:
    """Images (N, 28, 28, 1) uint8 from an .amat file of 784 zeros and ones per line."""
    try:
        rows = np.loadtxt(path, dtype=np.uint8, ndmin=2)
    except (OSError, ValueError) as exc:
        raise zoo.DataError(f"{path}: cannot read as lines of 784 zeros and ones ({exc})") from None
    if rows.shape[1] != 784 or rows.max(initial=0) > 1:
        raise zoo.DataError(f"{path}: expected lines of 784 zeros and ones, got {rows.shape[1]} values per line")
    return rows.reshape(-1, 28, 28, 1)


def read_28x28(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels, refused unless the images are 28x28."""
    images, labels = idx.read_pair(images_path, labels_path)
    if images.shape[1:] != (28, 28, 1):
        raise zoo.DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}; expected 28x28")
    return images, labels


def locate_idx(source: Source, source_dir: Optional[str]) -> Optional[dict[str, Path]]:
    """The dataset's four IDX files by stem: from the directory given, else a known local one."""
    if source_dir is not None:
        directory = Path(source_dir)
        if not directory.is_dir():
            raise zoo.DataError(f"{source.name}: {directory} is not a directory; {source.how_to_get}")
        missing = [stem for stem in IDX_STEMS if not _has_idx(directory, stem)]
        if missing:
            raise zoo.DataError(
                f"{source.name}: {directory} lacks {', '.join(m + '.gz' for m in missing)}; {source.how_to_get}"
            )
        return {stem: idx.find(directory, stem) for stem in IDX_STEMS}
    for known in map(Path, source.local_dirs):
        if all(_has_idx(known, stem) for stem in IDX_STEMS):
            return {stem: idx.find(known, stem) for stem in IDX_STEMS}
    return None


def fingerprint(files: dict[str, Path]) -> str:
    """A short hash of the source files' bytes: different files get a different cache."""
    digest = hashlib.sha1()
    for key in sorted(files):
        digest.update(key.encode())
        digest.update(Path(files[key]).read_bytes())
    return digest.hexdigest()[:12]


def prepared_arrays(
    name: str, files: Optional[dict[str, Path]], cache_root: Path, download: bool, how_to_get: str
) -> dict[str, dict[str, np.ndarray]]:
    """Every split as arrays, preparing the TFDS dataset first if its cache is missing or damaged.

    The cache lives under cache_root/<hash of the source files> (or /download),
    so other files never reuse an old preparation. Several processes may start
    at once on a cache not yet prepared (two `zoo train` runs, a bench beside a
    train): one prepares it, holding a lock, and the others wait and read its copy.
    """
    cache_dir = cache_root / (fingerprint(files) if files else "download")

    def builder():  # made afresh after a wait: TFDS reads the splits' info when a builder is made
        with no_stray_tfds_dirs():
            made = builder_classes()[name](data_dir=str(cache_dir), file_format="array_record")
        made.zoo_files, made.zoo_dataset = files, name
        return made

    if _complete(builder()):  # TFDS renames a finished preparation into place: reading needs no lock
        try:
            return _read_all(builder())
        except Exception:  # damaged, or being replaced: read again (or rebuilt) under the lock
            pass
    can_prepare = files is not None or download
    if not can_prepare and not _complete(builder()):  # refused before anything is written
        raise zoo.DataError(f"{name}: no local files and no downloaded copy under {cache_dir}; {how_to_get}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with held_exclusively(cache_dir / f"{name}.preparing.lock"):
        return _read_or_prepare(builder, name, cache_dir, can_prepare, how_to_get)


def _read_or_prepare(
    builder: Callable, name: str, cache_dir: Path, can_prepare: bool, how_to_get: str
) -> dict[str, dict[str, np.ndarray]]:
    """The splits of a complete cache (another process may have just prepared it), else prepared
    again; called holding the cache's lock."""
    for attempt in range(2):
        if _complete(builder()):
            try:
                return _read_all(builder())
            except Exception as exc:  # a damaged cache (killed while written, truncated file): rebuild it
                if attempt:
                    raise zoo.DataError(
                        f"{name}: the prepared copy under {cache_dir} cannot be read after rebuilding it: {exc}"
                    ) from exc
        _remove_partial(builder())
        if not can_prepare:
            raise zoo.DataError(f"{name}: no local files and no downloaded copy under {cache_dir}; {how_to_get}")
        _prepare(builder(), name)
    raise zoo.DataError(f"{name}: the prepared copy under {cache_dir} could not be read")


def _prepare(builder, name: str) -> None:
    import tensorflow_datasets as tfds

    from zoo.progress import on_terminal

    if not on_terminal():  # TFDS's own bars redraw with carriage returns: noise in a log
        tfds.disable_progress_bar()
    try:
        builder.download_and_prepare()
    except zoo.ZooError:
        raise
    except Exception as exc:  # TFDS's own failures (download refused, disk full, ...)
        raise zoo.DataError(f"{name}: preparing the TFDS dataset failed: {type(exc).__name__}: {exc}") from exc


def say(line: str) -> None:
    """One line for the user on stderr, as the zoo's own."""
    print(f"zoo: {line}", file=sys.stderr, flush=True)


def _complete(builder) -> bool:
    """Prepared and whole: TFDS writes dataset_info.json last, then renames the directory."""
    return (Path(builder.data_dir) / "dataset_info.json").is_file()


def _remove_partial(builder) -> None:
    """Drop a damaged version directory and the `.incomplete` leftovers of a killed preparation."""
    version_dir = Path(builder.data_dir)
    if version_dir.exists():
        shutil.rmtree(version_dir)
    if version_dir.parent.exists():
        # TFDS prepares into `incomplete.XXXX_<version>` and renames it when done.
        for leftover in version_dir.parent.glob(f"*incomplete*{version_dir.name}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _read_all(builder) -> dict[str, dict[str, np.ndarray]]:
    splits = {}
    sources = builder.as_data_source()
    for split, info in builder.info.splits.items():
        records = sources[split].__getitems__(list(range(len(sources[split]))))
        if len(records) != info.num_examples:
            raise ValueError(f"{split}: read {len(records)} of {info.num_examples} records")
        splits[split] = {key: np.stack([r[key] for r in records]) for key in records[0]}
    if not splits:  # a builder made before the copy was complete knows no splits
        raise ValueError("the prepared copy lists no splits")
    return splits


def make_idx_dataset_factory(source: Source):
    """A dataset factory for one MNIST-family dataset."""

    def factory(
        data_dir=None,
        source_dir: Optional[str] = None,
        cache_dir: Optional[str] = None,
        pixels: PixelMode = "dynamic_binarize",
        validation_size: Annotated[int, AtLeast(0)] = 5000,
        seed: Seed = 0,
        download: bool = False,
    ) -> zoo.Dataset:
        files = locate_idx(source, data_dir or source_dir)
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        arrays = prepared_arrays(source.name, files, cache, download, source.how_to_get)
        to_split = lambda a: zoo.Split((a["image"] / 255.0).astype(np.float32), a["label"].astype(np.int32))
        return image_dataset(
            source.name,
            to_split(arrays["train"]),
            to_split(arrays["test"]),
            source.class_names,
            pixels=pixels,
            validation_size=validation_size,
            seed=seed,
        )

    factory.conformance = {"files": "idx"}  # type: ignore[attr-defined]  # zoo.testing: the suite supplies source_dir
    factory.__name__ = f"make_{source.name}"
    factory.__doc__ = (
        f"{source.name} (28x28, 10 classes) through TFDS, from local IDX files or, with download: true, online.\n\n"
        f"    >>> make_{source.name}(source_dir='/path/to/idx', pixels='dynamic_binarize')  # doctest: +SKIP\n"
    )
    return factory


def make_binarized_mnist(
    data_dir=None, source_dir: Optional[str] = None, cache_dir: Optional[str] = None
) -> zoo.Dataset:
    """Binarized MNIST (Larochelle's fixed binarisation, 50k/10k/10k, no labels) from its .amat files.

    >>> make_binarized_mnist(source_dir='/path/to/amat')  # doctest: +SKIP
    """
    directory = data_dir or source_dir
    missing = [n for n in AMAT_FILES.values() if directory is None or not (Path(directory) / n).is_file()]
    if missing:
        where = directory or "no directory given"
        raise zoo.DataError(
            f"binarized_mnist: missing {', '.join(missing)} ({where}); pass --data-dir DIR holding binarized_mnist_train.amat, _valid and _test"
        )
    assert directory is not None  # else every file is missing, refused above
    files = {split: Path(directory) / name for split, name in AMAT_FILES.items()}
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    arrays = prepared_arrays("binarized_mnist", files, cache, download=False, how_to_get="")
    to_split = lambda a: zoo.Split(a["image"].astype(np.float32), np.zeros(len(a["image"]), np.int32))
    return image_dataset(
        "binarized_mnist",
        to_split(arrays["train"]),
        to_split(arrays["test"]),
        [],
        validation=to_split(arrays["validation"]),
    )


make_binarized_mnist.conformance = {"files": "amat"}  # type: ignore[attr-defined]  # zoo.testing: the suite supplies source_dir


@zoo.hookimpl
def register_components(register):
    """MNIST-family datasets through TFDS."""
    for source in SOURCES.values():
        register("dataset", source.name, make_idx_dataset_factory(source))
    register("dataset", "binarized_mnist", make_binarized_mnist)
