"""Bad data of your own, given to `zoo train`: one `zoo: error:` line naming what is wrong,
exit status 2, and no run directory left (nothing written at all). The folders and files are
real ones, written by Pillow and numpy in each test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import zoo
from tests.conftest import colour_images, write_image_folder
from tests.test_bad_inputs import run_cli, snapshot


def refused(capsys, tmp_path, dataset: dict, fragment: str) -> str:
    """Train vae_mlp on `dataset`: refused in one line holding `fragment`, nothing written."""
    workdir = tmp_path / "run"
    before = snapshot(tmp_path)
    status, err = run_cli(
        ["train", "vae_mlp", "--workdir", str(workdir), "--set", "dataset=" + json.dumps(dataset)], capsys
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    assert not workdir.exists() and snapshot(tmp_path) == before
    return lines[0]


def png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_an_empty_folder(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    refused(capsys, tmp_path, {"name": "images", "path": str(tmp_path / "photos")}, "no image files")


@pytest.mark.parametrize("damage", ["not_an_image", "truncated"])
def test_a_corrupt_image_is_named(tmp_path, capsys, damage):
    images, labels = colour_images(12)
    write_image_folder(tmp_path / "photos", images, labels)
    bad = tmp_path / "photos" / "disc" / "0003.png"
    data = bad.read_bytes()
    bad.write_bytes(b"this is no PNG" if damage == "not_an_image" else data[: len(data) // 2])
    refused(capsys, tmp_path, {"name": "images", "path": str(tmp_path / "photos")}, f"cannot read {bad}")


def test_mixed_sizes_without_size_name_two_files_and_their_sizes(tmp_path, capsys):
    png(tmp_path / "p" / "a.png", np.zeros((12, 10, 3), np.uint8))
    png(tmp_path / "p" / "b.png", np.zeros((8, 8, 3), np.uint8))
    line = refused(capsys, tmp_path, {"name": "images", "path": str(tmp_path / "p")}, "sizes differ")
    assert f"{tmp_path / 'p' / 'a.png'} is 10x12" in line and f"{tmp_path / 'p' / 'b.png'} is 8x8" in line


def test_grey_and_colour_mixed_with_channels_unset_name_one_of_each(tmp_path, capsys):
    png(tmp_path / "p" / "grey.png", np.zeros((8, 8), np.uint8))
    png(tmp_path / "p" / "colour.png", np.zeros((8, 8, 3), np.uint8))
    line = refused(capsys, tmp_path, {"name": "images", "path": str(tmp_path / "p")}, "grey and colour images mixed")
    assert "grey.png is grey" in line and "colour.png is colour" in line and "channels: 1 or channels: 3" in line


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.full((20, 4, 4), np.nan, np.float32), "320 pixels are NaN"),
        (np.linspace(0, 1.5, 320, dtype=np.float32).reshape(20, 4, 4), "values float32 in [0, 1.5]"),
        (np.arange(320).reshape(20, 4, 4), "values int64 in [0, 319]"),
        (np.linspace(-1, 1, 320).reshape(20, 4, 4), "values float64 in [-1, 1]"),
    ],
    ids=["nan", "above_one", "above_255", "minus_one"],
)
def test_an_array_with_nan_or_out_of_range_values(tmp_path, capsys, array, fragment):
    np.save(tmp_path / "x.npy", array)
    refused(capsys, tmp_path, {"name": "arrays", "path": str(tmp_path / "x.npy")}, fragment)


def test_labels_missing_for_some_images(tmp_path, capsys):
    images, labels = colour_images(12)
    write_image_folder(tmp_path / "p", images, labels)
    png(tmp_path / "p" / "stray.png", images[0])
    refused(
        capsys, tmp_path, {"name": "images", "path": str(tmp_path / "p"), "labels": "folders"}, "1 of 13 images lie"
    )
    np.savez(tmp_path / "d.npz", train=images, train_labels=labels, test=images[:4])
    refused(capsys, tmp_path, {"name": "arrays", "path": str(tmp_path / "d.npz")}, "labels missing for the test images")


def test_too_few_images_for_the_splits(tmp_path, capsys):
    images, labels = colour_images(2)
    write_image_folder(tmp_path / "p", images, labels)
    refused(capsys, tmp_path, {"name": "images", "path": str(tmp_path / "p")}, "too few images (2) for the splits")


def test_zoo_train_refuses_bad_data_and_leaves_no_run_directory(tmp_path):
    with pytest.raises(zoo.DataError, match="pixels are NaN"):
        zoo.train("vae_mlp", tmp_path / "run", data=np.full((20, 4, 4), np.nan), progress=False)
    assert not (tmp_path / "run").exists()
