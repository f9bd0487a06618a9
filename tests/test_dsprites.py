"""The dsprites dataset (plugins/datasets/dsprites.py), the factors of the Dataset contract, and the
disentanglement metrics in the harness: `Run.evaluate`, `zoo eval --disentanglement` and a suite's
`eval.disentanglement`."""

import numpy as np
import pytest

import zoo
from vae_zoo_plugins.datasets.dsprites import FACTOR_NAMES, factor_values, generate, make_dsprites, render
from tests.conftest import first_party_registry, plugin_of
from zoo.evaluation.bench import load_suite
from zoo.core.data import build_dataset
from zoo.errors import DataError, RecipeError
from zoo.training.experiment import train_and_evaluate
from zoo.evaluation.trained_run import Run
from zoo.evaluation.disentanglement import METRICS
from zoo.cli.main import main

SMALL = {"scales": 2, "orientations": 4, "positions": 3}  # 3 x 2 x 4 x 3 x 3 = 216 combinations
TINY = [
    "train.steps=10",
    "train.log_every=10",
    "train.checkpoint_every=10",
    "train.batch_size=16",
    "encoder.hidden=[8]",
    "decoder.hidden=[8]",
]


def all_factors(dataset: zoo.Dataset) -> np.ndarray:
    return np.concatenate([dataset.split(name).factors for name in ("train", "validation", "test")])


def test_factors_are_declared_and_follow_their_images():
    dataset = make_dsprites(num_images=300, validation_size=50, test_size=50, seed=3)
    assert dataset.has_factors and tuple(dataset.factor_names) == FACTOR_NAMES
    assert tuple(dataset.factor_sizes) == (3, 6, 10, 16, 16)
    assert [len(dataset.split(name).factors) for name in ("train", "validation", "test")] == [200, 50, 50]
    for name in ("train", "validation", "test"):
        split = dataset.split(name)
        assert split.factors.dtype == np.int32 and np.array_equal(split.labels, split.factors[:, 0])
        # Each image is the rendering of its own factors (binarized validation and test: their bits cover it).
        drawn = render(split.factors, 32, factor_values(6, 10, 16))
        assert np.all(split.images[drawn == 0] == 0) and np.all(split.images[drawn == 1] == 1)
    assert len(np.unique(all_factors(dataset), axis=0)) == 300  # distinct combinations


def test_deterministic_by_seed_and_not_cached_into_sameness():
    first = make_dsprites(num_images=100, validation_size=10, test_size=10, seed=5)
    generate.cache_clear()
    again = make_dsprites(num_images=100, validation_size=10, test_size=10, seed=5)
    other = make_dsprites(num_images=100, validation_size=10, test_size=10, seed=6)
    assert np.array_equal(first.train.images, again.train.images) and np.array_equal(
        all_factors(first), all_factors(again)
    )
    assert not np.array_equal(all_factors(first), all_factors(other))


def test_the_full_product_holds_every_combination_once():
    dataset = make_dsprites(num_images=None, validation_size=20, test_size=20, pixels="grayscale", **SMALL)
    rows = all_factors(dataset)
    assert len(rows) == 216 and len(np.unique(rows, axis=0)) == 216
    with pytest.raises(DataError, match="num_images 217 exceeds the 216 distinct combinations"):
        make_dsprites(num_images=217, **SMALL)


def test_each_factor_changes_the_image_as_named():
    values = factor_values(6, 8, 16)
    base = np.array([2, 3, 1, 7, 7])

    def image(**change):
        row = base.copy()
        for name, index in change.items():
            row[FACTOR_NAMES.index(name)] = index
        return render(row[None], 32, values)[0, ..., 0]

    def centre(picture):
        ys, xs = np.indices(picture.shape)
        return np.sum(xs * picture) / picture.sum(), np.sum(ys * picture) / picture.sum()

    assert (
        centre(image(position_x=12))[0] > centre(image())[0] + 4
        and centre(image(position_y=12))[1] > centre(image())[1] + 4
    )
    assert image(scale=5).sum() > 1.5 * image(scale=0).sum()
    assert not np.allclose(image(orientation=4), image())  # a heart turned half way is another image
    # The documented ambiguity: a square a quarter turn on (2 of 8 steps) is the same image.
    assert np.allclose(image(shape=0, orientation=3), image(shape=0, orientation=1), atol=0.05)
    assert not np.allclose(image(shape=0, orientation=2), image(shape=0, orientation=1), atol=0.05)
    for shape in range(3):  # the largest shape in a corner is whole: as much of it shows as in the middle
        for orientation in range(8):
            corner, middle = (
                render(np.array([[shape, 5, orientation, x, y]]), 32, values).sum() for x, y in ((0, 15), (7, 7))
            )
            assert corner == pytest.approx(middle, rel=0.02), (shape, orientation)


def test_a_dataset_whose_factors_break_the_contract_is_refused():
    def make_bad():
        images = np.zeros((20, 4, 4, 1), np.float32)
        factors = np.zeros((20, 2), np.int32)
        factors[0, 1] = 5  # outside 0..size - 1 of a factor of size 3
        split = zoo.Split(images, np.zeros(20, np.int32), factors)
        return zoo.Dataset("bad", split, split, split, [], factor_names=("a", "b"), factor_sizes=(2, 3))

    registry = first_party_registry(plugin_of("bad_factors", ("dataset", "bad", make_bad)))
    with pytest.raises(DataError, match=r"dataset 'bad': the train split's factors fall outside"):
        build_dataset({"dataset": {"name": "bad"}}, registry)


@pytest.fixture(scope="module")
def dsprites_run(book, registry, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dsprites") / "run"
    train_and_evaluate(book.resolve("vae_dsprites", registry, TINY), workdir, registry, progress=False)
    return workdir


def test_run_evaluate_reports_mig_and_dci_on_posterior_means(dsprites_run, registry):
    run = Run.load(dsprites_run, registry)
    result = run.evaluate(
        num_samples=0,
        limit=500,
        disentanglement=True,
        disentanglement_examples=300,
        dci_model="forest",  # quick; the boosted trees (the default) are tested in test_disentanglement
        record=False,
    )
    assert result["disentanglement_examples"] == 300 and result["dci_model"] == "forest"
    for metric in METRICS:
        assert 0.0 <= result[metric] <= 1.0, (metric, result[metric])
    assert "mig" not in run.evaluate(num_samples=0, limit=50, record=False)  # only when asked


def test_a_split_too_small_for_the_metrics_groups_is_refused_before_any_work(dsprites_run, capsys):
    assert main(["eval", str(dsprites_run), "--disentanglement", "--limit", "40", "--num-samples", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "zoo: error: disentanglement: the metrics need at least 64 examples (the beta-VAE and FactorVAE "
        "scores draw groups of 64); the test split gives 40 (limit 40, disentanglement examples 10000)"
    )


def test_disentanglement_on_a_dataset_without_factors_names_the_key(book, registry, tmp_path):
    train_and_evaluate(book.resolve("vae_mlp", registry, TINY), tmp_path / "digits", registry, progress=False)
    with pytest.raises(DataError, match="disentanglement: dataset 'digits' has no ground-truth factors"):
        Run.load(tmp_path / "digits", registry).evaluate(num_samples=0, disentanglement=True)


def test_a_suite_asks_for_disentanglement_with_one_key(book, tmp_path):
    assert load_suite("disentanglement", book).evaluation.disentanglement is True
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nvariants: [vae_mlp]\neval: {disentanglement: 1}\n")
    with pytest.raises(RecipeError, match="eval.disentanglement: expected a boolean, got 1"):
        load_suite(str(suite), book)
