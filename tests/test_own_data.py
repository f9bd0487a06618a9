"""Your own images as a dataset: a folder of files written by Pillow (`images`), an .npz or .npy
(`arrays`), and numpy arrays handed to `zoo.train(data=...)`. Checked against the arrays the
files were written from, and hand-computed cases of resizing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import zoo
from tests.conftest import colour_images, write_image_folder


def build(registry, **spec):
    return registry.build("dataset", spec)


def every_image(dataset) -> np.ndarray:
    return np.concatenate([dataset.train.images, dataset.validation.images, dataset.test.images])


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two stacks hold the same images, in any order."""
    return sorted(map(bytes, np.asarray(a, np.float32))) == sorted(map(bytes, np.asarray(b, np.float32)))


def test_a_folder_of_pngs_is_its_pixels_with_the_folders_as_classes(registry, image_folder):
    images, labels = colour_images(40)
    dataset = build(registry, name="images", path=str(image_folder))
    assert dataset.image_shape == (12, 10, 3) and dataset.pixel_levels == 256
    assert list(dataset.class_names) == ["disc", "square"]  # sorted folder names
    assert (len(dataset.train.images), len(dataset.validation.images), len(dataset.test.images)) == (32, 4, 4)
    assert same_rows(every_image(dataset), images / np.float32(255))
    # Each image keeps its class: squares are red, discs blue.
    for split in (dataset.train, dataset.test):
        red = split.images[..., 0].max(axis=(1, 2)) > 0.5
        np.testing.assert_array_equal(red, split.labels == dataset.class_names.index("square"))
    again = build(registry, name="images", path=str(image_folder))
    np.testing.assert_array_equal(again.test.images, dataset.test.images)  # the split is seeded


def test_resizing_averages_with_antialiasing(registry, tmp_path):
    # A one-pixel checkerboard of 0 and 255 halved: each output pixel covers two black and two white ones.
    board = ((np.indices((16, 12)).sum(axis=0) % 2) * 255).astype(np.uint8)
    flat = np.full((16, 12), 77, np.uint8)
    for index in range(10):
        Image.fromarray(board if index % 2 else flat).save(tmp_path / f"{index}.png")
    dataset = build(registry, name="images", path=str(tmp_path), size=[8, 6], channels=1, validation=0.2, test=0.2)
    assert dataset.image_shape == (8, 6, 1) and list(dataset.class_names) == []
    images = every_image(dataset)
    means = np.sort(images.reshape(10, -1).mean(axis=1))
    np.testing.assert_allclose(means[:5], 77 / 255, atol=1 / 255)  # a flat colour stays that colour
    centre = images[images.reshape(10, -1).std(axis=1) > 0.001][:, 2:-2, 2:-2]  # away from the borders
    np.testing.assert_allclose(centre, 127.5 / 255, atol=3 / 255)  # nearest-neighbour would give 0 or 1


def test_grey_files_give_one_channel_and_three_on_request(registry, tmp_path):
    images, labels = colour_images(20)
    grey = images.max(axis=-1, keepdims=True)
    write_image_folder(tmp_path, grey, labels)
    one = build(registry, name="images", path=str(tmp_path))
    assert one.image_shape == (12, 10, 1)
    assert same_rows(every_image(one), grey / np.float32(255))
    three = build(registry, name="images", path=str(tmp_path), channels=3)
    assert three.image_shape == (12, 10, 3)
    np.testing.assert_array_equal(three.test.images, np.repeat(one.test.images, 3, axis=-1))


def test_train_and_test_subfolders_are_the_splits_and_a_glob_selects_files(registry, tmp_path):
    images, labels = colour_images(30)
    write_image_folder(tmp_path / "train", images[:20], labels[:20])
    write_image_folder(tmp_path / "test", images[20:], labels[20:])
    dataset = build(registry, name="images", path=str(tmp_path), validation=0.25)
    assert same_rows(dataset.test.images, images[20:] / np.float32(255))
    assert (len(dataset.train.images), len(dataset.validation.images)) == (15, 5)  # validation out of train/
    globbed = build(registry, name="images", path=str(tmp_path / "train" / "disc" / "*.png"), labels="none")
    assert len(every_image(globbed)) == 10 and list(globbed.class_names) == []


def test_jpegs_read_close_to_what_was_written(registry, tmp_path):
    images, labels = colour_images(10)
    smooth = np.clip(images.astype(np.float32) * 0.5 + 60, 0, 255).astype(np.uint8)
    for index, image in enumerate(smooth):
        Image.fromarray(image).save(tmp_path / f"{index}.jpg", quality=95)
    dataset = build(registry, name="images", path=str(tmp_path), labels="none")
    assert dataset.image_shape == (12, 10, 3)
    assert abs(every_image(dataset).mean() - smooth.mean() / 255) < 0.02  # lossy, but the same picture


def test_an_npz_with_splits_and_labels_is_read_as_given(registry, tmp_path):
    images, labels = colour_images(30)
    np.savez(
        tmp_path / "d.npz",
        train=images[:20],
        train_labels=labels[:20],
        test=images[20:],
        test_labels=labels[20:],
        class_names=np.array(["square", "disc"]),
    )
    dataset = build(registry, name="arrays", path=str(tmp_path / "d.npz"), validation=0.1)
    np.testing.assert_array_equal(dataset.test.images, images[20:] / np.float32(255))
    np.testing.assert_array_equal(dataset.test.labels, labels[20:])
    assert list(dataset.class_names) == ["square", "disc"] and dataset.pixel_levels == 256
    assert (len(dataset.train.images), len(dataset.validation.images)) == (18, 2)


def test_a_npy_of_grey_floats_is_split_by_fractions(registry, tmp_path):
    grey = np.random.default_rng(0).uniform(size=(50, 6, 7)).astype(np.float32)
    np.save(tmp_path / "g.npy", grey)
    dataset = build(registry, name="arrays", path=str(tmp_path / "g.npy"), validation=0.2, test=0.1)
    assert dataset.image_shape == (6, 7, 1) and dataset.pixel_levels is None  # floats are not 8-bit
    assert (len(dataset.train.images), len(dataset.validation.images), len(dataset.test.images)) == (35, 10, 5)
    assert same_rows(every_image(dataset), grey[..., None])


@pytest.mark.slow
def test_zoo_train_on_arrays_and_every_run_method(tmp_path):
    images, labels = colour_images(48)
    tiny = {
        "encoder.hidden": [8],
        "decoder.hidden": [8],
        "latent_dim": 2,
        "train.steps": 4,
        "train.batch_size": 8,
        "train.log_every": 2,
        "train.checkpoint_every": 4,
    }
    data = {"train": images[:40], "train_labels": labels[:40], "test": images[40:], "test_labels": labels[40:]}
    continuous = {**tiny, "likelihood": {"name": "continuous_bernoulli"}}
    run = zoo.train("cvae_mlp", tmp_path / "run", data=data, overrides=continuous, progress=False)
    assert (tmp_path / "run" / "data.npz").is_file()
    loaded = zoo.load(tmp_path / "run")
    assert loaded.experiment.dataset.image_shape == (12, 10, 3)
    np.testing.assert_array_equal(loaded.experiment.dataset.test.images, images[40:] / np.float32(255))
    for each in (run, loaded):
        assert each.sample(2, condition=[0, 1]).shape == (4, 12, 10, 3)
        grid, rows, _ = each.sample_grid(per_row=3)
        assert grid.shape[1:] == (12, 10, 3) and len(rows) == 2
        x = images[40:44] / 255.0
        assert each.encode(x, labels[40:44]).shape == (4, 2)
        assert each.reconstruct(x, labels[40:44]).shape == (4, 12, 10, 3)
        assert each.decode(np.zeros((4, 2)), labels[40:44]).shape == (4, 12, 10, 3)
        assert each.log_likelihood(x, labels[40:44], num_samples=3).shape == (4,)
        metrics = each.evaluate("test", num_samples=3)
        nats = metrics["conditional_log_likelihood"]
        assert metrics["bits_per_dim"] == pytest.approx((-nats + 360 * np.log(255)) / (360 * np.log(2)))
    # `zoo sample` and `zoo plot` draw the colour as it is (red squares stay red, blue discs blue).
    from zoo.cli.main import main

    assert main(["sample", str(tmp_path / "run"), "--out", str(tmp_path / "s.png")]) == 0
    assert main(["plot", str(tmp_path / "run")]) == 0
    drawn = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"), np.int32)
    assert np.abs(drawn[..., 0] - drawn[..., 2]).max() > 40, "the samples figure lost its colour"
    plain = zoo.train("vae_mlp", tmp_path / "plain", data=images, overrides=tiny, progress=False)  # (N, H, W, C)
    assert plain.sample(3).shape == (3, 12, 10, 3)


def test_lazy_images_read_only_what_is_indexed_and_equal_the_eager_ones(registry, image_folder):
    eager = build(registry, name="images", path=str(image_folder))
    lazy = build(registry, name="images", path=str(image_folder), decode="lazy")
    assert type(lazy.train.images).__name__ == "LazyImages" and lazy.image_shape == (12, 10, 3)
    assert lazy.train.images.nbytes == eager.train.images.nbytes
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(np.asarray(lazy.split(name).images), eager.split(name).images)
        np.testing.assert_array_equal(lazy.split(name).labels, eager.split(name).labels)
    rows = np.array([[0, 3, 7], [5, 1, 1]])  # a block of batches, as the streamed input reads them
    np.testing.assert_array_equal(lazy.train.images[rows], eager.train.images[rows])


@pytest.mark.slow
def test_training_streamed_from_lazy_images_equals_training_in_memory(image_folder, tmp_path):
    tiny = {"encoder.hidden": [8], "decoder.hidden": [8], "latent_dim": 2, "train.steps": 6, "train.batch_size": 8}
    tiny.update({"train.log_every": 1, "train.checkpoint_every": 6})
    losses = {}
    for decode, feed in (("eager", "memory"), ("lazy", "stream")):
        dataset = {"name": "images", "path": str(image_folder), "decode": decode}
        overrides = {**tiny, "dataset": dataset, "train.input": feed}
        run = zoo.train("vae_mlp", tmp_path / decode, overrides=overrides, progress=False)
        losses[decode] = [r["loss"] for r in run.metrics if "loss" in r]
    assert len(losses["lazy"]) == 6
    np.testing.assert_allclose(losses["lazy"], losses["eager"], rtol=1e-5)  # the same batches, the same steps
