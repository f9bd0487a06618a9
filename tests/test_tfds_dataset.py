"""The `tfds` dataset on a real TFDS dataset that the test prepares on disk (TFDS's own
GeneratorBasedBuilder writing array_record, tests/conftest.py), read back offline; and its
refusals: an unknown builder names the closest, one not prepared gives the command."""

from __future__ import annotations

import numpy as np

from tests.conftest import colour_images
from tests.test_own_data import same_rows
from tests.test_own_data_bad_inputs import refused


def test_a_prepared_tfds_dataset_is_read_back_offline(registry, tfds_dir):
    dataset = registry.build("dataset", {"name": "tfds", "builder": "zoo_tiny_colours", "source_dir": str(tfds_dir)})
    images, _ = colour_images(10, seed=1)
    assert same_rows(dataset.test.images, images / np.float32(255))  # TFDS shuffles the records it writes
    red = dataset.test.images[..., 0].max(axis=(1, 2)) > 0.5  # each image keeps its label: squares are red
    np.testing.assert_array_equal(red, dataset.test.labels == 0)
    assert list(dataset.class_names) == ["square", "disc"] and dataset.image_shape == (12, 10, 3)
    assert dataset.pixel_levels == 256 and dataset.name == "zoo_tiny_colours"
    assert (len(dataset.train.images), len(dataset.validation.images)) == (36, 4)  # validation out of train
    unlabelled = registry.build(
        "dataset", {"name": "tfds", "builder": "zoo_tiny_colours", "label_key": None}, data_dir=str(tfds_dir)
    )
    assert list(unlabelled.class_names) == [] and not unlabelled.test.labels.any()


def test_an_unknown_builder_names_the_closest(tmp_path, capsys):
    line = refused(
        capsys, tmp_path, {"name": "tfds", "builder": "cifar11", "source_dir": str(tmp_path)}, "unknown builder"
    )
    assert "cifar10" in line


def test_a_builder_not_prepared_gives_the_command(tmp_path, capsys):
    dataset = {"name": "tfds", "builder": "cifar10", "source_dir": str(tmp_path / "none")}
    refused(capsys, tmp_path, dataset, f"prepare it with `tfds build cifar10 --data_dir {tmp_path / 'none'}")


def test_a_tfds_dataset_read_lazily_equals_the_one_read_at_once(registry, tfds_dir):
    spec = {"name": "tfds", "builder": "zoo_tiny_colours", "source_dir": str(tfds_dir)}
    eager, lazy = registry.build("dataset", spec), registry.build("dataset", {**spec, "decode": "lazy"})
    assert type(lazy.train.images).__name__ == "LazyImages"
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(np.asarray(lazy.split(name).images), eager.split(name).images)
        np.testing.assert_array_equal(lazy.split(name).labels, eager.split(name).labels)
