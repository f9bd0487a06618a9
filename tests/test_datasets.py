"""MNIST-family datasets through TFDS, from IDX files the tests write themselves
(real handwritten digits: scikit-learn's, scaled up to 28x28), and from Debian's
real Fashion-MNIST where installed."""

import os
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import zoo
import zoo.core.objectives
import zoo.training.runs
from vae_zoo_plugins.datasets import idx
from zoo.core.data import binarize

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


from tests.conftest import digits_as_mnist  # noqa: E402


def load(registry, directory, cache, **options):
    return registry.build("dataset", {"name": "mnist", "cache_dir": str(cache), **options}, data_dir=str(directory))


def test_idx_round_trip_through_tfds(registry, idx_dir, tmp_path):
    images, labels = digits_as_mnist(400)
    dataset = load(registry, idx_dir, tmp_path, pixels="grayscale", validation_size=50)
    assert (len(dataset.train.images), len(dataset.validation.images), len(dataset.test.images)) == (250, 50, 100)
    assert dataset.image_shape == (28, 28, 1) and dataset.class_names[3] == "3"
    np.testing.assert_array_equal(dataset.test.images[..., 0], images[300:] / np.float32(255))
    np.testing.assert_array_equal(dataset.test.labels, labels[300:])
    together = np.concatenate([dataset.train.images, dataset.validation.images])
    assert sorted(map(bytes, together)) == sorted(map(bytes, (images[:300, ..., None] / np.float32(255))))


def test_preparing_says_what_happens_in_the_zoos_words(registry, idx_dir, tmp_path, capsys):
    load(registry, idx_dir, tmp_path, pixels="grayscale", validation_size=50)
    out, err = capsys.readouterr()
    # TFDS's own line ('Downloading and preparing dataset Unknown size ...') is on stdout, where a
    # command's JSON goes, and says 'downloading' of files that are local.
    assert "Downloading" not in out and "Unknown size" not in out and out == "", out
    said = [line for line in err.splitlines() if line.startswith("zoo: mnist: ")]
    assert said[0] == (
        f"zoo: mnist: preparing a copy once, from the files in {idx_dir}, under {tmp_path}/"
        + said[0].split(f"under {tmp_path}/")[1]
    ), said
    assert said[0].endswith("; later runs read that copy") and said[-1] == "zoo: mnist: prepared"
    load(registry, idx_dir, tmp_path, pixels="grayscale", validation_size=50)  # the prepared copy: nothing said
    assert capsys.readouterr() == ("", "")


def test_preparing_leaves_nothing_in_the_temporary_folder(registry, idx_dir, tmp_path, monkeypatch):
    # TFDS 4.9 makes an empty tmp*tfds directory for each builder of an unprepared dataset and
    # never removes it (4 per preparation; thousands in /tmp after a few test sessions).
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    load(registry, idx_dir, tmp_path / "cache", pixels="grayscale", validation_size=50)
    load(registry, idx_dir, tmp_path / "cache", pixels="grayscale", validation_size=50)
    assert sorted(os.listdir(scratch)) == []


def test_pixel_modes(registry, idx_dir, tmp_path):
    dynamic = load(registry, idx_dir, tmp_path, validation_size=50)  # dynamic_binarize is the default
    assert dynamic.dynamic_binarization
    assert 0 < len(np.unique(dynamic.train.images)) > 2  # training data stays grayscale
    for split in (dynamic.validation, dynamic.test):
        assert set(np.unique(split.images)) <= {0.0, 1.0}
    again = load(registry, idx_dir, tmp_path, validation_size=50)
    np.testing.assert_array_equal(again.test.images, dynamic.test.images)  # static draws have a fixed seed
    static = load(registry, idx_dir, tmp_path, pixels="static_binarize", validation_size=50)
    assert not static.dynamic_binarization and set(np.unique(static.train.images)) <= {0.0, 1.0}
    # A binarized pixel is 1 with the pixel's intensity as probability.
    gray = np.full((200, 28, 28, 1), 0.3, np.float32)
    assert binarize(gray, 0).mean() == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "t10k-labels-idx1-ubyte.gz").unlink(), "lacks t10k-labels-idx1-ubyte.gz"),
        (
            lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(
                (d / "train-images-idx3-ubyte.gz").read_bytes()[:500]
            ),
            "train-images-idx3-ubyte.gz: cannot read",
        ),
        (
            lambda d: idx.write(d / "train-images-idx3-ubyte.gz", np.zeros((300, 28, 20), np.uint8)),
            "train-images-idx3-ubyte.gz: images are 28x20; expected 28x28",
        ),
        (
            lambda d: (d / "train-labels-idx1-ubyte.gz").write_bytes(
                __import__("gzip").compress(b"PK\x03\x04 not idx")
            ),
            "train-labels-idx1-ubyte.gz: not an IDX file",
        ),
        (
            lambda d: __import__("shutil").copy(d / "train-labels-idx1-ubyte.gz", d / "train-images-idx3-ubyte.gz"),
            "IDX header says type 0x08 with 1 dimensions; expected unsigned bytes (0x08) with 3",
        ),
        (lambda d: idx.write(d / "t10k-labels-idx1-ubyte.gz", np.zeros(99, np.uint8)), "holds 100 images but"),
    ],
)
def test_bad_files_get_one_clear_message(registry, idx_dir, tmp_path, damage, message):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(idx_dir, broken)
    damage(broken)
    with pytest.raises(zoo.DataError) as info:
        load(registry, broken, tmp_path / "cache")
    assert message in str(info.value)
    assert str(broken) in str(info.value)


def test_truncated_raw_idx_file_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    idx.write(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        zoo.DataError, match="holds 7756 bytes but its header \\(10, 28, 28\\) needs 7856; the file is truncated"
    ):
        idx.read(path, 3)


def test_no_source_fails_at_once_with_what_to_do(registry, tmp_path):
    with pytest.raises(zoo.DataError) as info:
        registry.build("dataset", {"name": "kmnist", "cache_dir": str(tmp_path)}, data_dir=None)
    assert "kmnist: no local files and no downloaded copy under" in str(info.value) and "pass --data-dir DIR" in str(
        info.value
    )
    with pytest.raises(zoo.DataError, match="is not a directory"):
        registry.build(
            "dataset", {"name": "fashion_mnist", "cache_dir": str(tmp_path)}, data_dir=str(tmp_path / "nope")
        )
    with pytest.raises(zoo.DataError, match="binarized_mnist: missing binarized_mnist_train.amat"):
        registry.build("dataset", {"name": "binarized_mnist", "cache_dir": str(tmp_path)}, data_dir=str(tmp_path))


def test_unknown_dataset_name_lists_the_known(registry, book):
    with pytest.raises(
        zoo.RecipeError,
        match="unknown dataset 'fashion_mnst' \\(did you mean 'fashion_mnist'\\?\\); known: arrays, binarized_mnist, color_dsprites, digits, dsprites, fashion_mnist, images, kmnist, mnist, tfds",
    ):
        book.resolve("vae_mlp", registry, ["dataset={name: fashion_mnst}"])


def test_half_written_cache_is_rebuilt(registry, idx_dir, tmp_path):
    first = load(registry, idx_dir, tmp_path, validation_size=50)
    (version_dir,) = tmp_path.glob("*/zoo_mnist/1.0.0")  # the cache is keyed by a hash of the files
    # Killed mid-preparation: a leftover incomplete directory and a version dir without its info.
    (version_dir.parent / "incomplete.ABC123_1.0.0").mkdir()
    (version_dir / "dataset_info.json").unlink()
    rebuilt = load(registry, idx_dir, tmp_path, validation_size=50)
    np.testing.assert_array_equal(rebuilt.test.images, first.test.images)
    assert not list(version_dir.parent.glob("incomplete*"))
    # A truncated record file in an otherwise complete cache is detected on reading, and rebuilt.
    record = next(version_dir.glob("*train.array_record*"))
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    again = load(registry, idx_dir, tmp_path, validation_size=50)
    np.testing.assert_array_equal(again.train.images, first.train.images)


def test_binarized_mnist_reads_amat_files(registry, tmp_path):
    rng = np.random.default_rng(0)
    for name, count in (("train", 30), ("valid", 10), ("test", 12)):
        bits = rng.integers(0, 2, size=(count, 784))
        np.savetxt(tmp_path / f"binarized_mnist_{name}.amat", bits, fmt="%d")
        if name == "test":
            expected = bits
    dataset = registry.build(
        "dataset", {"name": "binarized_mnist", "cache_dir": str(tmp_path / "cache")}, data_dir=str(tmp_path)
    )
    assert (len(dataset.train.images), len(dataset.validation.images)) == (30, 10)
    np.testing.assert_array_equal(dataset.test.images.reshape(12, 784), expected)
    with pytest.raises(ValueError, match="no class labels"):
        registry.build("condition", {"name": "onehot_label"}, image_shape=(28, 28, 1), num_classes=dataset.num_classes)


def test_dynamic_binarization_draws_fresh_bits_every_batch(registry, idx_dir, tmp_path, book):
    from flax import nnx

    from zoo.core.assembly import assemble
    from zoo.training.step import TrainState, make_optimizer, make_train_step

    recipe = book.resolve(
        "vae_mlp", registry, ["dataset={name: mnist, cache_dir: " + str(tmp_path) + ", validation_size: 50}"]
    )
    experiment = assemble(recipe, registry, data_dir=str(idx_dir))
    seen = []

    def recording_objective(model, batch, rng):
        loss, metrics = zoo.core.objectives.elbo()(model, batch, rng)
        return loss, {**metrics, "x": batch.x}

    graphdef, params = nnx.split(experiment.model)
    optimizer = make_optimizer(1e-3)
    step = make_train_step(graphdef, recording_objective, experiment.condition, optimizer, 0, dynamic_binarization=True)
    state = TrainState(params, optimizer.init(params))
    images, labels = jnp.asarray(experiment.dataset.train.images), jnp.asarray(experiment.dataset.train.labels)
    same_batch = jnp.arange(64, dtype=jnp.int32)[None]
    for number in range(2):
        state, metrics = step(state, images, labels, same_batch, 0, number)
        seen.append(np.asarray(metrics["x"]))
    assert set(np.unique(seen[0])) == {0.0, 1.0}
    assert np.mean(seen[0] != seen[1]) > 0.01  # the same images, drawn afresh
    assert abs(seen[0].mean() - float(images[:64].mean())) < 0.02


def test_quadrant_task_works_on_28x28_images(registry, idx_dir, tmp_path):
    dataset = load(registry, idx_dir, tmp_path, validation_size=50)
    condition = registry.build(
        "condition",
        {"name": "visible_quadrants", "visible": (0, 1, 2)},
        image_shape=dataset.image_shape,
        num_classes=10,
    )
    x, c = condition.split(jnp.asarray(dataset.test.images[:4]), None)
    assert x.shape == (4, 14 * 14) and c.shape == (4, 3 * 14 * 14)


@pytest.mark.slow  # trains on real Fashion-MNIST
@pytest.mark.skipif(
    not FASHION_DIR.is_dir() and os.environ.get("CI") != "true",
    reason="real Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist (Debian)",
)
def test_trains_on_real_fashion_mnist(registry, book, tmp_path):
    assert FASHION_DIR.is_dir(), f"CI must have Debian's dataset-fashion-mnist at {FASHION_DIR}"
    from zoo.training.experiment import train_and_evaluate

    recipe = book.resolve(
        "vae_mlp",
        registry,
        [
            "dataset={name: fashion_mnist, cache_dir: " + str(tmp_path / "cache") + "}",
            "train.steps=20",
            "train.log_every=10",
            "train.checkpoint_every=20",
        ],
    )
    summary = train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)
    assert summary["step"] == 20 and np.isfinite(summary["validation_elbo"])
    first_loss = zoo.training.runs.read_metrics(tmp_path / "run")[0]["loss"]
    assert summary["train"]["loss"] < first_loss  # it learns: 784-pixel binary images start near 543 nats


def test_other_files_never_reuse_an_old_preparation(registry, idx_dir, tmp_path):
    import shutil

    first = load(registry, idx_dir, tmp_path / "cache", pixels="grayscale", validation_size=50)
    other = tmp_path / "other"
    shutil.copytree(idx_dir, other)
    images, labels = digits_as_mnist(400)
    idx.write(other / "t10k-images-idx3-ubyte.gz", 255 - images[300:])  # the same digits, inverted
    second = load(registry, other, tmp_path / "cache", pixels="grayscale", validation_size=50)
    np.testing.assert_allclose(second.test.images, 1.0 - first.test.images, atol=1e-6)


def test_the_embedded_digits_are_scikit_learns_read_without_importing_it():
    """The default dataset reads scikit-learn's shipped file itself (importing scikit-learn cost a
    sixth of `zoo train`'s start): a fresh process leaves scikit-learn unimported, and the arrays
    are exactly what scikit-learn's own loader returns."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from vae_zoo_plugins.datasets.digits import read_digits

    images, digits = read_digits()
    reference = load_digits()
    np.testing.assert_array_equal(images, reference.images)
    np.testing.assert_array_equal(digits, reference.target)
    probe = "import sys; from vae_zoo_plugins.datasets.digits import read_digits; read_digits(); print('sklearn' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
