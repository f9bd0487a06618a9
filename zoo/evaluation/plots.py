"""Figures of a trained run as PNG files (matplotlib, Agg): samples, reconstructions,
interpolations, latent traversals, the latent space and learning curves.

The numbers behind each figure come from small pure functions in zoo/evaluation/figure_data.py
(`pca_2d`, `interpolation_path`, `traversal_grid`, ...); the `plot_*` functions draw one
PNG each; `plot_run` writes them all for one run directory. What a condition
is comes from the condition object alone (`split`, `assemble`, `grid`,
`class_conditional`), never from its registered name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from zoo.errors import ZooError
from zoo.files import writable_directory
from zoo.evaluation.figure_data import (
    pca_2d,
    most_active_units,
    encode_split,
    interpolation_pairs,
    interpolation_images,
    reconstruction_images,
    traversal_images,
    learning_curve_series,
    best_validation,
    TRAVERSAL_OFFSETS,
    INTERPOLATION_STEPS,
)
from zoo.images import tile

GAP_COLOUR = (0.69, 0.77, 0.87)  # light steel blue between tiles
FIGURES = ("samples", "reconstructions", "interpolation", "traversals", "latent_space", "learning_curves")


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --- Drawing ----------------------------------------------------------------------------------


def draw_tiles(
    axis,
    images: np.ndarray,
    rows: int,
    *,
    row_labels: Sequence[str] = (),
    column_labels: Sequence[str] = (),
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
) -> None:
    """Images in [0, 1] tiled row-major on one axis, rows and columns labelled."""
    images = np.asarray(images, np.float32)
    canvas = np.clip(tile(images, rows), 0.0, 1.0)
    canvas = np.repeat(canvas, 3, axis=-1) if canvas.shape[-1] == 1 else canvas
    # tile() leaves 1-pixel gaps of ones; coloured, they stay apart from white strokes and the white page.
    canvas[tile(np.zeros(images.shape[:3] + (1,), np.float32), rows)[..., 0] > 0.5] = GAP_COLOUR
    height, width = images.shape[1] + 1, images.shape[2] + 1
    axis.imshow(canvas, interpolation="nearest")
    axis.set_yticks([r * height + (height - 2) / 2 for r in range(len(row_labels))], list(row_labels))
    axis.set_xticks([c * width + (width - 2) / 2 for c in range(len(column_labels))], list(column_labels))
    axis.tick_params(length=0)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize="medium")


def tile_figure(count_rows: int, count_columns: int, panels: int = 1):
    """A figure with `panels` image axes side by side, sized to the tiles it will hold."""
    plt = pyplot()
    inches = 0.42
    figure, axes = plt.subplots(
        1,
        panels,
        squeeze=False,
        figsize=(max(4.0, panels * (count_columns * inches + 1.2)), max(2.5, count_rows * inches + 1.4)),
    )
    return figure, list(axes[0])


def save_figure(figure, path: Path, title: str) -> Path:
    """Give the figure its title, write it as PNG and free it."""
    figure.suptitle(title, fontsize="medium")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot().close(figure)
    return Path(path)


def plot_images(images: np.ndarray, rows: int, path: Path, title: str, **labels: Any) -> Path:
    """One panel of tiled images as a PNG."""
    figure, (axis,) = tile_figure(rows, -(-len(images) // rows))
    draw_tiles(axis, images, rows, **labels)
    return save_figure(figure, path, title)


def plot_traversals(
    images: np.ndarray,
    condition_labels: Sequence[str],
    units: Sequence[int],
    offsets: np.ndarray,
    path: Path,
    title: str,
    ylabel: str = "",
) -> Path:
    """Traversals (conditions, units, offsets, H, W, C): one row per unit, or with a condition a panel per unit, a row per condition."""
    columns = [f"{o:+g}σ" if o else "0" for o in offsets]
    xlabel = "offset from the prior mean, in prior standard deviations"
    if len(images) == 1:
        return plot_images(
            images[0].reshape((-1,) + images.shape[3:]),
            len(units),
            path,
            title,
            row_labels=[f"z[{u}]" for u in units],
            column_labels=columns,
            xlabel=xlabel,
        )
    figure, axes = tile_figure(len(images), len(offsets), panels=len(units))
    for index, (axis, unit) in enumerate(zip(axes, units)):
        draw_tiles(
            axis,
            images[:, index].reshape((-1,) + images.shape[3:]),
            len(images),
            row_labels=condition_labels if index == 0 else (),
            column_labels=columns,
            title=f"unit z[{unit}]",
            ylabel=ylabel if index == 0 else "",
        )
    figure.supxlabel(xlabel, fontsize="small")
    return save_figure(figure, path, title)


def plot_latent_space(
    means: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: Path, title: str, note: str = ""
) -> Path:
    """Posterior means in 2-D (PCA when latent_dim > 2), coloured by class, with a legend of the class names."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    if means.shape[1] > 2:
        points, explained = pca_2d(means)
        axis_names = [
            f"principal component {i + 1} of the posterior means ({explained[i]:.0%} of variance)" for i in range(2)
        ]
        title += f"\nposterior means of the test images, PCA of {means.shape[1]} latent dimensions"
    elif means.shape[1] == 2:
        points, axis_names = means, ["z[0] (posterior mean)", "z[1] (posterior mean)"]
        title += "\nposterior means of the test images"
    else:
        points, axis_names = np.column_stack([means[:, 0], labels]), ["z[0] (posterior mean)", "class"]
        title += "\nposterior means of the test images"
    if note:
        title += f"\n({note})"
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for k, name in enumerate(class_names or [None]):
        chosen = labels == k if class_names else slice(None)
        axis.scatter(points[chosen, 0], points[chosen, 1], s=9, alpha=0.75, color=colours(k % colours.N), label=name)
    if class_names:
        axis.legend(title="class", fontsize="small", markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis.set_xlabel(axis_names[0])
    axis.set_ylabel(axis_names[1])
    axis.grid(alpha=0.3)
    return save_figure(figure, path, title)


def plot_learning_curves(records: Sequence[dict], path: Path, title: str) -> Optional[Path]:
    """Training and validation -ELBO (and the training loss where it differs) against step; None without metrics."""
    series = learning_curve_series(records)
    if not series:
        return None
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, (steps, values) in series.items():
        axis.plot(steps, values, marker="o" if name.startswith("validation") else None, markersize=4, label=name)
    best = best_validation(records)
    if best is not None:
        epoch = f", epoch {best['epoch']:g}" if "epoch" in best else ""
        axis.plot(
            [best["step"]],
            [-best["elbo"]],
            marker="*",
            markersize=14,
            color="black",
            linestyle="none",
            label=f"best checkpoint (step {best['step']}{epoch})",
        )
    axis.set_xlabel("training step")
    axis.set_ylabel("nats per example (lower is better)")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    return save_figure(figure, path, title)


# --- A whole run ------------------------------------------------------------------------------


class FigureSource(NamedTuple):
    """What the figures of one run are drawn from: the trained model and the test images it is shown."""

    experiment: Any
    graphdef: Any
    params: Any
    model: Any
    images: np.ndarray
    labels: np.ndarray
    title: str

    @property
    def row_title(self) -> str:
        """What a row of a per-condition figure stands for."""
        return "class" if getattr(self.experiment.condition, "class_conditional", False) else ""


def write_samples(run: FigureSource, out: Path, seed: int, per_row: int) -> Path:
    """samples.png: a grid of samples; a row per class (or per condition) for a CVAE."""

    from zoo.core.sampling import sample_images

    samples, labels, rows = sample_images(
        run.experiment, run.graphdef, run.params, jax.random.key(seed), per_row=per_row
    )
    given = "z, c), z ~ p(z | c), a row per condition" if run.model.conditional else "z), z ~ p(z)"
    return plot_images(
        samples,
        rows,
        out / "samples.png",
        f"{run.title}\nsamples: mean of p(x | {given}",
        row_labels=labels,
        ylabel=run.row_title if labels else "",
    )


def write_reconstructions(run: FigureSource, out: Path, per_row: int) -> Path:
    """reconstructions.png: rows of test images, each above a row of their reconstructions."""
    count = 3 * per_row
    shown, row_labels = reconstruction_images(
        run.model, run.experiment.condition, run.images[:count], run.labels[:count], per_row
    )
    note = "; c as given, x reconstructed" if run.model.conditional else ""
    return plot_images(
        shown,
        len(row_labels),
        out / "reconstructions.png",
        f"{run.title}\ntest images and their reconstructions (decoder mean at the posterior mean{note})",
        row_labels=row_labels,
    )


def write_interpolation(run: FigureSource, out: Path) -> Path:
    """interpolation.png: decoded points between the posterior means of pairs of test images."""
    condition, dataset = run.experiment.condition, run.experiment.dataset
    pairs, labels = interpolation_pairs(condition, run.labels, dataset.class_names, rows=8)
    if not pairs:
        raise ZooError(f"the {dataset.name} test split has no two images to interpolate between")
    images = interpolation_images(run.model, condition, run.images, run.labels, pairs)
    within = ", within each class" if run.row_title else "; c moves along with z" if run.model.conditional else ""
    return plot_images(
        images,
        len(pairs),
        out / "interpolation.png",
        f"{run.title}\ninterpolation between the posterior means of two test images{within}",
        row_labels=labels,
        column_labels=["first"] + [""] * (INTERPOLATION_STEPS - 2) + ["second"],
        xlabel="linear path in z, decoded; its ends are the reconstructions of the two images",
        ylabel=run.row_title,
    )


def write_latent_figures(run: FigureSource, out: Path) -> list[Path]:
    """traversals.png (the most active units) and latent_space.png (posterior means in 2-D by class)."""
    condition, dataset = run.experiment.condition, run.experiment.dataset
    posterior, prior = encode_split(run.model, condition, run.images, run.labels)
    units = [int(u) for u in most_active_units(posterior - prior, 4 if run.model.conditional else 8)]
    traversals, condition_labels = traversal_images(run.model, condition, dataset, units, TRAVERSAL_OFFSETS)
    title = f"{run.title}\ntraversals of the units whose posterior mean varies most, the others at the prior mean"
    written = [
        plot_traversals(
            traversals, condition_labels, units, TRAVERSAL_OFFSETS, out / "traversals.png", title, run.row_title
        )
    ]
    note = "the encoder also sees c, so z need not separate the classes" if run.model.conditional else ""
    written.append(
        plot_latent_space(posterior, run.labels, dataset.class_names, out / "latent_space.png", run.title, note)
    )
    return written


def plot_run(
    run_dir: Path,
    out_dir: Path,
    registry,
    *,
    seed: int = 0,
    data_dir: Optional[str] = None,
    limit: int = 2000,
    per_row: int = 8,
    progress: bool = False,
) -> list[Path]:
    """Write every figure of a trained run (FIGURES, as NAME.png) into `out_dir`; returns the paths written.

    The test split (its first `limit` images) supplies the inputs; `seed` the samples.
    """
    from zoo.core.data import evaluation_split
    from zoo.progress import Progress
    from zoo.evaluation.trained_run import Run

    loaded = Run.load(run_dir, registry, data_dir)
    metrics = loaded.metrics  # a damaged log is refused before any figure is written
    out = writable_directory(out_dir)
    test = evaluation_split(loaded.experiment.dataset, "test")
    title = f"{loaded.variant} on {loaded.experiment.dataset.name}, step {loaded.step}"
    run = FigureSource(
        loaded.experiment, loaded.graphdef, loaded.params, loaded.model, test.images[:limit], test.labels[:limit], title
    )
    # Each drawing function with the number of figures it writes: the progress counts figures, not functions.
    figures: list[tuple[int, Callable[[], Sequence[Optional[Path]]]]] = [
        (1, lambda: [write_samples(run, out, seed, per_row)]),
        (1, lambda: [write_reconstructions(run, out, per_row)]),
        (1, lambda: [write_interpolation(run, out)]),
        (2, lambda: write_latent_figures(run, out)),
        (1, lambda: [plot_learning_curves(metrics, out / "learning_curves.png", f"{title}\nlearning curves")]),
    ]
    written: list[Path] = []
    total = sum(count for count, _ in figures)
    with Progress(total, f"figures of {run_dir}", unit="figures", enabled=progress) as bar:
        for count, draw in figures:
            written += [path for path in draw() if path]
            bar.update(count)
    return written
