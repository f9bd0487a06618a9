"""Figures of a trained run: the numbers behind them against independent facts, and `zoo plot` end to end."""

import json

import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from flax import nnx

from zoo.evaluation import figure_data, plots
from zoo.cli.main import main
from zoo.core.data import evaluation_split
from zoo.core.assembly import assemble
from zoo.evaluation.trained_run import Run


@pytest.fixture(scope="module")
def trained(tiny_cvae_run, tiny_vae_run):
    """The session's two tiny runs on digits (tests/conftest.py, read-only): a CVAE with a 4-D latent
    (projected to 2-D by PCA) and a VAE with a 2-D latent (drawn as it is)."""
    return {"cvae": tiny_cvae_run, "vae": tiny_vae_run}


def zoo(capsys, *args):
    """Run the `zoo` command in this process: (exit status, stdout, stderr)."""
    status = main(list(map(str, args)))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(result, message):
    """Exit status 2 and one line on stderr, `zoo: error: ...` with the message."""
    status, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    assert message in lines[0], lines[0]


def grid_shape(path):
    """(rows, columns) of an image grid in a PNG, counted from the coloured gaps between its tiles."""
    rgb = matplotlib.image.imread(path)[..., :3]
    gap = rgb[..., 2] - rgb[..., 0] > 0.1

    def bands(counts):  # a gap between rows (columns) crosses the whole grid; the other kind only a tile's height
        full = counts > 0.5 * counts.max()
        return int(np.sum(np.diff(np.r_[0, full.astype(int)]) == 1))

    return bands(gap.sum(axis=1)) + 1, bands(gap.sum(axis=0)) + 1


def test_pca_projection_matches_scikit_learn():
    from sklearn.decomposition import PCA

    points = np.random.default_rng(0).normal(size=(300, 6)) @ np.diag([3.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    projected, explained = figure_data.pca_2d(points)
    reference = PCA(n_components=2).fit(points)
    expected = reference.transform(points)
    signs = np.sign(np.sum(projected * expected, axis=0))
    np.testing.assert_allclose(projected * signs, expected, atol=1e-9)
    np.testing.assert_allclose(explained, reference.explained_variance_ratio_, rtol=1e-9)


def test_interpolation_path_is_the_straight_segment():
    start, end = np.array([[0.0, 1.0], [2.0, -2.0]]), np.array([[4.0, 1.0], [0.0, 2.0]])
    path = figure_data.interpolation_path(start, end, 5)
    assert path.shape == (5, 2, 2)
    np.testing.assert_array_equal(path[0], start)
    np.testing.assert_array_equal(path[-1], end)
    np.testing.assert_allclose(path[2], (start + end) / 2)
    np.testing.assert_allclose(np.diff(path, n=2, axis=0), 0.0, atol=1e-12)  # equal steps: a straight line


def test_traversal_grid_moves_only_the_traversed_unit():
    rng = np.random.default_rng(1)
    base, scale = rng.normal(size=5), rng.uniform(0.5, 2.0, size=5)
    units, offsets = [3, 0], np.array([-3.0, 0.0, 1.5])
    grid = figure_data.traversal_grid(base, scale, units, offsets)
    assert grid.shape == (2, 3, 5)
    for row, unit in enumerate(units):
        for column, offset in enumerate(offsets):
            z = grid[row, column]
            assert z[unit] == pytest.approx(base[unit] + offset * scale[unit], rel=1e-6)
            others = np.arange(5) != unit
            np.testing.assert_allclose(z[others], base[others], rtol=1e-6)


def test_most_active_units_rank_by_variance_of_the_posterior_mean():
    deviations = np.random.default_rng(2).normal(size=(1000, 4)) * np.array([0.1, 3.0, 1.0, 0.01])
    assert list(figure_data.most_active_units(deviations, 3)) == [1, 2, 0]


def test_learning_curves_are_the_runs_metrics(trained):
    records = [json.loads(line) for line in (trained["cvae"] / "metrics.jsonl").read_text().splitlines()]
    series = figure_data.learning_curve_series(records)
    steps, values = series["training -ELBO (= the loss)"]  # the ELBO objective: its loss is -ELBO
    assert list(steps) == [10, 15, 20, 30]  # logged every 10 steps and at each checkpoint (every 15)
    np.testing.assert_allclose(values, [-r["elbo"] for r in records if r["split"] == "train"])
    steps, values = series["validation -ELBO"]
    assert list(steps) == [15, 30]
    np.testing.assert_allclose(values, [-r["elbo"] for r in records if r["split"] == "validation"])
    hybrid = [
        {"step": 5, "split": "train", "loss": 3.0, "elbo": -4.0},
        {"step": 10, "split": "train", "loss": 2.0, "elbo": -3.0},
    ]
    series = figure_data.learning_curve_series(hybrid)
    assert list(series) == ["training -ELBO", "training loss (the objective)"]
    np.testing.assert_allclose(series["training loss (the objective)"][1], [3.0, 2.0])


def test_interpolation_ends_are_the_reconstructions_of_a_class_pair(trained, registry):
    loaded = Run.load(trained["cvae"], registry)
    experiment, graphdef, params = loaded.experiment, loaded.graphdef, loaded.params
    model, condition = nnx.merge(graphdef, params), experiment.condition
    test = evaluation_split(experiment.dataset, "test")
    pairs, labels = figure_data.interpolation_pairs(condition, test.labels, experiment.dataset.class_names, rows=8)
    assert labels == [str(d) for d in range(10)]
    assert all(test.labels[a] == test.labels[b] == k for k, (a, b) in enumerate(pairs))
    images = figure_data.interpolation_images(model, condition, test.images, test.labels, pairs, steps=5).reshape(
        (10, 5, 8, 8, 1)
    )
    for end, column in ((0, 0), (1, -1)):
        chosen = [pair[end] for pair in pairs]
        x, c = condition.split(jnp.asarray(test.images[chosen]), jnp.asarray(test.labels[chosen]))
        np.testing.assert_allclose(images[:, column], np.asarray(model.reconstruct(x, c)), atol=1e-5)
    assert not np.allclose(images[:, 0], images[:, -1])


def test_quadrant_reconstructions_keep_the_visible_part(book, registry):
    experiment = assemble(book.resolve("cvae_quadrants", registry, ["condition.visible=[2]"]), registry)
    test = evaluation_split(experiment.dataset, "test")
    shown, labels = figure_data.reconstruction_images(
        experiment.model, experiment.condition, test.images[:4], test.labels[:4], per_row=4
    )
    assert labels == ["input", "reconstruction"]
    inputs, rebuilt = shown[:4], shown[4:]
    np.testing.assert_array_equal(inputs, test.images[:4])
    bottom_left = (slice(None), slice(4, 8), slice(0, 4))
    np.testing.assert_array_equal(rebuilt[bottom_left], test.images[:4][bottom_left])
    x, c = experiment.condition.split(jnp.asarray(test.images[:4]), None)
    hidden = np.ones((8, 8), bool)
    hidden[4:, :4] = False
    np.testing.assert_allclose(rebuilt[:, hidden, 0], np.asarray(experiment.model.reconstruct(x, c)), atol=1e-6)


@pytest.mark.parametrize(("name", "samples_grid"), [("cvae", (10, 8)), ("vae", (8, 8))])
def test_zoo_plot_writes_every_figure(trained, tmp_path, capsys, name, samples_grid):
    out = tmp_path / "figures"
    status, stdout, _ = zoo(capsys, "plot", trained[name], "--out", out)
    assert status == 0
    written = stdout.split()
    assert written == [str(out / f"{figure}.png") for figure in plots.FIGURES]
    for path in written:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert 200 <= height <= 2000 and 200 <= width <= 3000, (path, height, width)
    assert grid_shape(out / "samples.png") == samples_grid  # a CVAE: one row per class
    assert grid_shape(out / "interpolation.png") == (samples_grid[0], plots.INTERPOLATION_STEPS)
    assert grid_shape(out / "reconstructions.png") == (6, 8)  # three rows of inputs, each above its reconstructions


def test_zoo_plot_counts_the_figures_it_writes(trained, registry, tmp_path, monkeypatch):
    """The progress counts figures, not drawing functions (it said 5/5 and wrote 6)."""
    import zoo.progress

    counted = []

    class Counted(zoo.progress.Progress):
        def close(self, finished=True):
            counted.append((self.done, self.total))
            super().close(finished)

    monkeypatch.setattr(zoo.progress, "Progress", Counted)
    written = plots.plot_run(trained["vae"], tmp_path / "figures", registry, progress=True)
    assert len(written) == len(plots.FIGURES) == len(list((tmp_path / "figures").glob("*.png")))
    assert counted == [(len(written), len(written))]


def test_zoo_plot_errors_get_one_line(trained, tmp_path, capsys):
    assert_one_line_error(zoo(capsys, "plot", tmp_path), "holds no run (no recipe.yaml)")
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "recipe.yaml").write_text((trained["vae"] / "recipe.yaml").read_text())
    assert_one_line_error(zoo(capsys, "plot", untrained), "holds no checkpoint yet")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(
        zoo(capsys, "plot", trained["vae"], "--out", blocker / "plots"),
        f"{blocker / 'plots'}: cannot write the figures there",
    )
