"""Shared fixtures. In-process tests never load the machine's installed entry
points: they register the first-party plugin modules on a fresh plugin manager
(the way llm's tests do), and `default_registry()` is pointed at that registry."""

from __future__ import annotations

import collections
import importlib
import importlib.metadata
import os
import shutil
import tempfile
import types
from pathlib import Path

# Most of the tests' programs are tiny and run once, so LLVM's optimisation of the CPU code XLA
# generates costs more than it saves. Level 1 keeps the cheap passes: measured here in alternating
# runs, test_priors_hierarchy took 82 s at level 1, 66-72 s at 0 and 100-104 s at the default, and
# a test that runs 4000 steps took 36 s at 1, 39 s at 3 and 150 s at 0. XLA's passes over the
# program, which decide what is computed, are the same at every level. Set before JAX starts its
# backend and inherited by the CLI's subprocesses; a level given in XLA_FLAGS wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1").strip()

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoo
from vae_zoo_plugins.datasets.tfds_scratch import no_stray_tfds_dirs
from tests.web_page import browser, cvae_run, cvae_server, digit_classifier  # noqa: F401 (fixtures of the browser tests)
from zoo.core import plugin_manager

REPO = Path(__file__).resolve().parent.parent
JAX_CACHE = pytest.StashKey[str]()
KEEP_JAX_CACHE = pytest.StashKey[bool]()
SESSION_JAX_CACHE = "ZOO_TEST_SESSION_JAX_CACHE"


def pytest_configure(config):
    """One JAX compilation cache for the whole session, in this process: a program compiled once
    (the training step of a tiny vae_mlp, trained by dozens of tests; the finite-values pass of
    every model built) is read back from it the next time, where JAX's own cache, kept per Python
    function, compiles it again for each new run or closure. Entries are keyed by the program (its
    HLO), the compile options and JAX's version, so what runs is what would have been compiled.
    The workers of `pytest -n 2` share it (the first process makes it and hands it on in the
    environment), so a program both workers need is compiled once. Not shared with the
    subprocesses of the CLI and fault tests (JAX writes entries without a lock, and those are
    killed on purpose), and removed at the session's end: each session starts cold, so its times
    stay comparable. `ZOO_TEST_JAX_CACHE=DIR` keeps the cache in DIR between sessions instead
    (`make test-fast` does): a later session reads back every program an earlier one compiled, and
    a changed program (another key) is compiled and stored beside the old ones."""
    kept = os.environ.get("ZOO_TEST_JAX_CACHE")
    handed_on = os.environ.get(SESSION_JAX_CACHE) if hasattr(config, "workerinput") else None
    if kept:  # absolute: tests that change directory must still find it
        kept = str(Path(kept).resolve())
        Path(kept).mkdir(parents=True, exist_ok=True)
    elif not handed_on:  # this process owns the session's cache: xdist's workers, started later, inherit it
        os.environ[SESSION_JAX_CACHE] = tempfile.mkdtemp(prefix="zoo-tests-jax-cache-")
    config.stash[JAX_CACHE] = kept or handed_on or os.environ[SESSION_JAX_CACHE]
    config.stash[KEEP_JAX_CACHE] = bool(kept or handed_on)  # a worker leaves it to its owner
    jax.config.update("jax_compilation_cache_dir", config.stash[JAX_CACHE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # No size limit: with one, JAX scans every entry (thousands here) on every write, which made a
    # fast tier slower than no cache. Without one, the workers of `pytest -n 2` share the cache
    # without a lock; an entry read while the other worker writes it fails to load, and JAX warns
    # and compiles it again, so what runs is still what was compiled.


def pytest_unconfigure(config):
    if not config.stash.get(KEEP_JAX_CACHE, False):
        shutil.rmtree(config.stash.get(JAX_CACHE, ""), ignore_errors=True)


# Fixtures that make every test using them slow (`make test-fast` leaves it out): headless Chromium,
# and what needs the CVAE trained 200 steps for the page (tests/web_page.py): its server and the
# harness classifier of its samples. A new browser test is marked by the fixtures it asks for.
SLOW_FIXTURES = {"browser", "cvae_server", "digit_classifier"}


# The test files that take longest, longest first (seconds summed from `pytest -n 2 --dist loadfile
# --durations=0` on 2 loaded cores, 2026-12-06: 717, 486, 366, 160, 122, 114, 104, ... 48 s). With
# `--dist loadfile` a file runs whole on one of the two workers, so a long file handed out last keeps
# one worker busy while the other has finished: pytest-xdist's own order (most tests first) handed
# out test_parallel.py (7 tests, 6 minutes loaded) near the end. The Makefile turns that order off
# (`--no-loadscope-reorder`) and the files run in this one; a file not listed follows, most tests first.
LONGEST_FILES = (
    "test_conformance.py",
    "test_conformance_variants.py",
    "test_parallel.py",
    "test_fitted_samplers.py",
    "test_faults.py",
    "test_cli.py",
    "test_docs.py",
    "test_priors_hierarchy.py",
    "test_training_features.py",
    "test_bad_inputs.py",
    "test_your_data_doc.py",
    "test_perf_reference.py",
    "test_geometric.py",
    "test_adversarial.py",
    "test_bench.py",
    "test_inputs.py",
    "test_own_data.py",
    "test_web_line.py",
    "test_conv_layers.py",
    "test_vq.py",
)


def longest_first(items: list) -> None:
    """Order `items` file by file: LONGEST_FILES in their order, then the other files by their
    number of tests (xdist's default), each file's tests in their own order (the sort is stable)."""
    rank = {name: index for index, name in enumerate(LONGEST_FILES)}
    counts = collections.Counter(item.path.name for item in items)
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), -counts[item.path.name], item.path.name))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    longest_first(items)


def first_party_modules() -> list:
    """The zoo's own plugin modules: every entry point of group `vae_zoo` in pyproject.toml
    (read there, not from this machine's installed metadata), so a new one is loaded without
    editing a list here."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed project's metadata holds the same table
        targets = [
            ep.value for ep in importlib.metadata.entry_points(group="vae_zoo") if ep.dist and ep.dist.name == "vae-zoo"
        ]
    else:
        targets = list(
            tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["vae_zoo"].values()
        )
    return [importlib.import_module(target.split(":")[0]) for target in targets]


FIRST_PARTY = first_party_modules()


def first_party_manager(*extra):
    """A plugin manager of the zoo's own plugins (and `extra` test plugins), no entry points."""
    return zoo.make_plugin_manager(entry_points=False, plugins=[*FIRST_PARTY, *extra])


def first_party_registry(*extra) -> zoo.Registry:
    """A registry of the zoo's own plugins (and `extra` test plugins), no entry points."""
    return zoo.fill_registry(first_party_manager(*extra))


def plugin_of(name: str, *registrations) -> types.ModuleType:
    """A plugin module whose hook registers `registrations`, (kind, name, factory) each,
    for `first_party_registry(plugin_of(...))`."""
    module = types.ModuleType(name)

    @zoo.hookimpl
    def register_components(register):
        for kind, component, factory in registrations:
            register(kind, component, factory)

    module.register_components = register_components
    return module


@pytest.fixture(scope="session")
def registry() -> zoo.Registry:
    return first_party_registry()


@pytest.fixture(scope="session")
def first_party_plugins():
    return first_party_manager()


@pytest.fixture(autouse=True)
def _no_installed_entry_points(registry, first_party_plugins, monkeypatch):
    monkeypatch.setattr(plugin_manager, "_DEFAULT", registry)
    monkeypatch.setattr(plugin_manager, "_DEFAULT_MANAGER", first_party_plugins)


def digits_as_mnist(count):
    """`count` real 8x8 digits of scikit-learn as 28x28 uint8 images (3x nearest-neighbour, 2-pixel border)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = (bunch.images[:count] * (255 / 16)).astype(np.uint8)
    large = np.kron(small, np.ones((3, 3), np.uint8))
    return np.pad(large, ((0, 0), (2, 2), (2, 2))), bunch.target[:count].astype(np.uint8)


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory):
    """Four IDX files of 300 training and 100 test images, written by the test suite."""
    from vae_zoo_plugins.datasets import idx

    directory = tmp_path_factory.mktemp("idx")
    images, labels = digits_as_mnist(400)
    idx.write(directory / "train-images-idx3-ubyte.gz", images[:300])
    idx.write(directory / "train-labels-idx1-ubyte.gz", labels[:300])
    idx.write(directory / "t10k-images-idx3-ubyte.gz", images[300:])
    idx.write(directory / "t10k-labels-idx1-ubyte.gz", labels[300:])
    return directory


@pytest.fixture(scope="session")
def amat_dir(tmp_path_factory):
    """Binarized-MNIST .amat files (real digits, binarized at 0.5), written by the test suite."""
    directory = tmp_path_factory.mktemp("amat")
    images, _ = digits_as_mnist(60)
    bits = (images.reshape(60, 784) > 127).astype(np.uint8)
    for name, rows in (("train", bits[:40]), ("valid", bits[40:50]), ("test", bits[50:])):
        np.savetxt(directory / f"binarized_mnist_{name}.amat", rows, fmt="%d")
    return directory


def colour_images(count: int, height: int = 12, width: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` uint8 colour images (count, height, width, 3) of two classes: a red square on
    black (class 0) or a blue disc (class 1), at random places, with their labels."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:height, :width]
    images = np.zeros((count, height, width, 3), np.uint8)
    labels = np.arange(count) % 2
    for image, label in zip(images, labels):
        r, c = rng.integers(3, height - 3), rng.integers(3, width - 3)
        if label == 0:
            image[r - 2 : r + 2, c - 2 : c + 2, 0] = 230
        else:
            image[(rows - r) ** 2 + (columns - c) ** 2 <= 6, 2] = 210
    return images, labels


def write_image_folder(directory: Path, images: np.ndarray, labels: np.ndarray, class_names=("square", "disc")) -> Path:
    """`images` as PNG files written by Pillow, in one subfolder per class."""
    from PIL import Image

    for index, (image, label) in enumerate(zip(images, labels)):
        folder = directory / class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(folder / f"{index:04d}.png")
    return directory


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """40 labelled colour PNGs (12x10) in two class folders, written by Pillow."""
    return write_image_folder(tmp_path_factory.mktemp("image_folder"), *colour_images(40))


@pytest.fixture(scope="session")
def arrays_file(tmp_path_factory) -> Path:
    """An .npz of 40 labelled uint8 colour images (12x10x3) with its class names."""
    images, labels = colour_images(40, seed=1)
    path = tmp_path_factory.mktemp("arrays") / "images.npz"
    np.savez(path, train=images, train_labels=labels, class_names=np.array(["square", "disc"]))
    return path


def prepare_tiny_tfds(data_dir: Path) -> Path:
    """A real TFDS dataset prepared on disk: `zoo_tiny_colours`, 40 train and 10 test colour
    images (12x10x3 uint8) with a ClassLabel, written by TFDS's own GeneratorBasedBuilder as
    array_record (offline, no TensorFlow)."""
    import tensorflow_datasets as tfds

    class ZooTinyColours(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(12, 10, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=["square", "disc"]),
                }
            )
            return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(40, 0), "test": self._generate_examples(10, 1)}

        def _generate_examples(self, count, seed):
            images, labels = colour_images(count, seed=seed)
            for index in range(count):
                yield index, {"image": images[index], "label": int(labels[index])}

    with no_stray_tfds_dirs():
        ZooTinyColours(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return data_dir


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> Path:
    """A directory holding the prepared TFDS dataset zoo_tiny_colours."""
    return prepare_tiny_tfds(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def book() -> zoo.RecipeBook:
    return zoo.RecipeBook([REPO / "registry.yaml"])


@pytest.fixture(scope="session")
def tiny(book, registry):
    """An untrained small vae_mlp (hidden layers of 16, a 3-D latent) and a Batch of 8 training
    digits, built once for the objectives checked against formulas (test_disentangling.py,
    test_importance_weighted.py). Shared by the session: a test reads it and must not change it."""
    from zoo.core.assembly import assemble
    from zoo.core.interfaces import Batch

    small = ["encoder.hidden=[16]", "decoder.hidden=[16]", "latent_dim=3", "train.batch_size=8"]
    experiment = assemble(book.resolve("vae_mlp", registry, small), registry)
    train = experiment.dataset.train
    x, c = experiment.condition.split(jnp.asarray(train.images[:8]), jnp.asarray(train.labels[:8]))
    return experiment.model, Batch(x, c)


# The suite's short trainings on the digits share one small configuration. A process keeps the
# jitted programs of a run for the next run of the same recipe whatever its seed
# (zoo.training.programs), and the session's JAX compilation cache (pytest_configure) hands a program
# compiled once to the other worker, so a run in this configuration costs about a second after the
# first; a different hidden size, latent size or batch size traces and compiles everything again.
TINY = ["encoder.hidden=[16]", "decoder.hidden=[16]", "latent_dim=2", "train.batch_size=16"]
# The shared runs' budget: 30 steps, logged every 10 and checkpointed (and validated) every 15, so
# the log holds records at the checkpoints between its own steps (10, 15, 20, 30).
TINY_RUN = [*TINY, "train.steps=30", "train.log_every=10", "train.checkpoint_every=15"]


def train_tiny(book, registry, variant: str, workdir: Path, *overrides: str) -> Path:
    """`variant` trained in `workdir` in the small configuration (TINY_RUN, then `overrides`)."""
    from zoo.training.experiment import train_and_evaluate

    train_and_evaluate(book.resolve(variant, registry, [*TINY_RUN, *overrides]), workdir, registry, progress=False)
    return workdir


def files_of(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under `directory` with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(directory.rglob("*")) if p.is_file()}


def shared_run(book, registry, tmp_path_factory, variant: str, overrides: list[str]):
    """`variant` trained once for the session with `overrides`, for tests that only read it (load,
    evaluate without recording, sample, plot, serve, refuse a bad command on it). A test that writes
    into a run copies it first (`shutil.copytree(run, tmp_path / "run")`); at the session's end the
    run must hold the same files, unchanged, else the suite fails here rather than depend on test order."""
    from zoo.training.experiment import train_and_evaluate

    workdir = tmp_path_factory.mktemp("shared") / variant
    train_and_evaluate(book.resolve(variant, registry, overrides), workdir, registry, progress=False)
    before = files_of(workdir)
    yield workdir
    assert files_of(workdir) == before, f"a test wrote into the shared run {workdir}: copy it first"


@pytest.fixture(scope="session")
def tiny_vae_run(book, registry, tmp_path_factory):
    """vae_mlp, TINY_RUN (a 2-D latent), trained once and shared read-only (see shared_run)."""
    yield from shared_run(book, registry, tmp_path_factory, "vae_mlp", TINY_RUN)


@pytest.fixture(scope="session")
def tiny_cvae_run(book, registry, tmp_path_factory):
    """cvae_mlp, TINY_RUN with a 4-D latent (figures project more than two dimensions by PCA),
    trained once and shared read-only (see shared_run)."""
    yield from shared_run(book, registry, tmp_path_factory, "cvae_mlp", [*TINY_RUN, "latent_dim=4"])


# vq_vae at its own sizes, 300 steps: the fewest after which its EMA codebook is nearly all in use
# on the test split (tests/test_vq.py checks it), shared by the tests that load, evaluate or sample a
# trained VQ-VAE.
VQ_RUN = ["train.steps=300", "train.log_every=100", "train.checkpoint_every=300"]


@pytest.fixture(scope="session")
def vq_run(book, registry, tmp_path_factory):
    """vq_vae (VQ_RUN), trained once and shared read-only (see shared_run)."""
    yield from shared_run(book, registry, tmp_path_factory, "vq_vae", VQ_RUN)


@pytest.fixture
def data_files(idx_dir, amat_dir, image_folder, arrays_file, tfds_dir):
    """The suite's own data files, by the kind a dataset declares (`factory.conformance["files"]`)."""
    return {"idx": idx_dir, "amat": amat_dir, "images": image_folder, "arrays": arrays_file, "tfds": tfds_dir}
