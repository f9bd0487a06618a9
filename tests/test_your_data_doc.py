"""docs/your-data.md works as written: its three commands on a folder of JPEGs and its notebook
code on a numpy array, run on tiny data the test generates (only the step count and batch size
made small)."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, colour_images
from zoo.cli.main import main

DOC = (REPO / "docs" / "your-data.md").read_text()
BLOCKS = dict(re.findall(r"<!-- run: (\w+) -->\n```\w+\n(.*?)```", DOC, flags=re.S))


def small(text: str, long: str, short: str) -> str:
    """`text` with `long` (the doc's step count) replaced by `short`."""
    assert long in text, f"docs/your-data.md no longer says {long}: update this test"
    return text.replace(long, short)


def test_the_doc_has_both_recipes():
    assert set(BLOCKS) == {"folder", "notebook"}
    assert len(BLOCKS["folder"].strip().splitlines()) == 3


@pytest.mark.slow
def test_three_commands_take_a_folder_of_jpegs_to_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    images, labels = colour_images(24, height=40, width=36)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "photos" / ("cats", "dogs")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.jpg", quality=90)
    for line in BLOCKS["folder"].strip().splitlines():
        argv = (
            shlex.split(small(line, "train.steps=2000", "train.steps=3"))[1:]
            if "train" in line
            else shlex.split(line)[1:]
        )
        if argv[0] == "train":
            argv += ["--set", "train.batch_size=8"]
        assert main(argv) == 0, (argv, capsys.readouterr().err)
        if argv[0] == "eval":
            assert "bits_per_dim" in capsys.readouterr().out
    drawn = np.asarray(Image.open(tmp_path / "samples.png").convert("RGB"), np.int32)
    assert drawn.shape[0] > 32 and np.abs(drawn[..., 0] - drawn[..., 1]).max() > 0  # colour, not grey


@pytest.mark.slow
def test_the_notebook_code_trains_on_a_numpy_array(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "faces.npy", colour_images(40, height=16, width=16)[0])
    namespace: dict = {}
    exec(
        compile(
            small(BLOCKS["notebook"], '"train.steps": 2000', '"train.steps": 3, "train.batch_size": 8'),
            "docs/your-data.md:notebook",
            "exec",
        ),
        namespace,
    )
    assert namespace["samples"].shape == (16, 16, 16, 3)
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) > 0  # bits/dim printed
    assert (tmp_path / "runs" / "faces" / "data.npz").is_file()
