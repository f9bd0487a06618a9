"""`zoo serve` and `zoo export-web` say how often the loaded model's samples show the class asked
for, and warn below 0.8 (issue 27): a barely trained CVAE draws mostly the wrong digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.web_page import train_run
from zoo.evaluation import classifier
from zoo.cli.main import main
from zoo.cli.page_commands import say_class_accuracy
from zoo.web.export_web import REPORT_FILE
from zoo.evaluation.trained_run import Run


def test_the_notice_warns_below_the_floor_only():
    assert classifier.accuracy_notice(0.93, 1000) == [
        "class accuracy of the model's samples: 0.93 (1000 samples, the harness classifier)"
    ]
    low = classifier.accuracy_notice(0.41, 1000)
    assert len(low) == 2 and low[1].startswith("warning: below 0.8: the page will often draw the wrong class")


def test_export_web_and_serve_report_a_barely_trained_models_accuracy(registry, book, tmp_path, capsys):
    run_dir = train_run(registry, book, "cvae_mlp", 5, tmp_path / "cvae")
    assert main(["export-web", str(run_dir), str(tmp_path / "page")]) == 0
    captured = capsys.readouterr()
    report = json.loads((tmp_path / "page" / REPORT_FILE).read_text())
    # The page runs the int8 weights: their accuracy is the one reported, from the same 100 per class.
    said = [line for line in captured.err.splitlines() if line.startswith(("class accuracy", "warning"))]
    assert said == classifier.accuracy_notice(report["class_accuracy_int8"], 1000)
    assert report["class_accuracy_int8"] < 0.8 and said[1].startswith("warning: below 0.8")

    # zoo serve's start-up line, from the same classifier file export-web trained.
    say_class_accuracy(Run.load(run_dir, registry), run_dir)
    served = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("class accuracy", "warning"))]
    assert len(served) == 2 and served[1].startswith("warning: below 0.8")


def test_within_class_spread_is_the_per_pixel_deviation_averaged_over_pixels_and_classes():
    # Class 0: two images, 0 and 1 everywhere (population std 0.5 at every pixel); class 1: one
    # image repeated (std 0). The mean over the two classes is 0.25.
    images = np.stack([np.zeros((2, 2, 1)), np.ones((2, 2, 1)), np.full((2, 2, 1), 0.3), np.full((2, 2, 1), 0.3)])
    labels = np.array([0, 0, 1, 1])
    assert classifier.within_class_spread(images, labels) == pytest.approx(0.25)


def test_sample_diversity_is_one_for_real_images_and_zero_for_class_averages(registry):
    dataset = registry.build("dataset", {"name": "digits"})
    images, labels = dataset.train.images, dataset.train.labels
    assert classifier.sample_diversity(images, labels, dataset, per_class=len(images)) == pytest.approx(1.0)
    averages = np.stack([images[labels == label].mean(axis=0) for label in labels])  # every sample its class's mean
    assert classifier.sample_diversity(averages, labels, dataset) == pytest.approx(0.0, abs=1e-6)
