"""The numbers behind the figures of zoo.evaluation.plots: small pure functions of a trained model's
outputs and a run's metrics (principal components, interpolation paths, traversal grids,
the images of each figure, learning-curve series), drawn by nothing here."""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

TRAVERSAL_OFFSETS = np.linspace(-3.0, 3.0, 7)  # in prior standard deviations around the base point
INTERPOLATION_STEPS = 9


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, D) projected on their first two principal axes (numpy SVD), and the fraction of variance each explains."""
    centred = points - points.mean(axis=0)
    _, singular_values, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular_values**2
    return centred @ axes[:2].T, variance[:2] / variance.sum()


def interpolation_path(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """`steps` evenly spaced points from start to end, both included: shape (steps, *start.shape)."""
    weights = np.linspace(0.0, 1.0, steps).reshape((steps,) + (1,) * np.ndim(start))
    return (1.0 - weights) * np.asarray(start) + weights * np.asarray(end)


def traversal_grid(base: np.ndarray, scale: np.ndarray, units: Sequence[int], offsets: np.ndarray) -> np.ndarray:
    """z of shape (len(units), len(offsets), D): row i is `base` with unit units[i] set to base + offset * scale."""
    base, scale = np.asarray(base, np.float32), np.asarray(scale, np.float32)
    grid = np.broadcast_to(base, (len(units), len(offsets), len(base))).copy()
    for row, unit in enumerate(units):
        grid[row, :, unit] = base[unit] + np.asarray(offsets) * scale[unit]
    return grid


def most_active_units(deviations: np.ndarray, count: int) -> np.ndarray:
    """The `count` latent units whose posterior mean varies most over the data, most active first."""
    return np.argsort(-np.var(deviations, axis=0), kind="stable")[:count]


def encode_split(
    model, condition, images: np.ndarray, labels: np.ndarray, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """(posterior means of q(z | x, c), prior means of p(z | c)) for each image, both (N, latent_dim)."""
    posterior, prior = [], []
    for start in range(0, len(images), batch_size):
        x, c = condition.split(
            jnp.asarray(images[start : start + batch_size]), jnp.asarray(labels[start : start + batch_size])
        )
        posterior.append(np.asarray(model.encode(x, c).mean()))
        prior.append(np.asarray(model.prior_distribution(c, x.shape[0]).mean()))
    return np.concatenate(posterior), np.concatenate(prior)


def interpolation_pairs(
    condition, labels: np.ndarray, class_names: Sequence[str], rows: int
) -> tuple[list[tuple[int, int]], list[str]]:
    """Pairs of test indices to interpolate between, and a label per pair.

    A class condition gives the first two test images of each class (one row
    per class, so c stays the same along the row); otherwise consecutive pairs.
    """
    if getattr(condition, "class_conditional", False):
        found = [(np.flatnonzero(labels == k)[:2], name) for k, name in enumerate(class_names)]
        return [(int(i[0]), int(i[1])) for i, _ in found if len(i) == 2], [name for i, name in found if len(i) == 2]
    count = min(rows, len(labels) // 2)
    return [(2 * i, 2 * i + 1) for i in range(count)], [f"test #{2 * i} → #{2 * i + 1}" for i in range(count)]


def interpolation_images(
    model,
    condition,
    images: np.ndarray,
    labels: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    steps: int = INTERPOLATION_STEPS,
) -> np.ndarray:
    """Decoded means along the segment between the posterior means of each pair, (pairs * steps, H, W, C).

    c moves along the same segment (constant within a class pair; for a
    quadrant condition the visible part blends from one input to the other).
    """
    order = np.array([p[0] for p in pairs] + [p[1] for p in pairs])
    x, c = condition.split(jnp.asarray(images[order]), jnp.asarray(labels[order]))
    z = np.asarray(model.encode(x, c).mean())
    count = len(pairs)
    z_path = interpolation_path(z[:count], z[count:], steps).transpose(1, 0, 2).reshape(count * steps, -1)
    c_path = None
    if c is not None:
        c = np.asarray(c)
        c_path = jnp.asarray(
            interpolation_path(c[:count], c[count:], steps).swapaxes(0, 1).reshape((count * steps,) + c.shape[1:])
        )
    decoded = model.decode(jnp.asarray(z_path), c_path).mean()
    return np.asarray(condition.assemble(decoded, c_path))


def reconstruction_images(
    model, condition, images: np.ndarray, labels: np.ndarray, per_row: int
) -> tuple[np.ndarray, list[str]]:
    """Rows of inputs, each followed by a row of their reconstructions (as the condition shows them)."""
    x, c = condition.split(jnp.asarray(images), jnp.asarray(labels))
    shown = np.asarray(condition.assemble(x, c))
    rebuilt = np.asarray(condition.assemble(model.reconstruct(x, c), c))
    rows, row_labels = [], []
    for start in range(0, len(images), per_row):
        rows += [shown[start : start + per_row], rebuilt[start : start + per_row]]
        row_labels += ["input", "reconstruction"]
    return np.concatenate(rows), row_labels


SPREAD_SAMPLES = 4000


def prior_spread(prior) -> np.ndarray:
    """The prior's standard deviation per unit: its own where the distribution has one, else
    estimated from SPREAD_SAMPLES draws (a hierarchy of layers has no closed form)."""
    try:
        return np.asarray(prior.stddev())
    except NotImplementedError:
        draws = prior.sample(seed=jax.random.key(0), sample_shape=(SPREAD_SAMPLES,))
        return np.asarray(jnp.std(draws, axis=0))


def traversal_images(
    model, condition, dataset, units: Sequence[int], offsets: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Decoded traversals, (conditions, units, offsets, H, W, C), and a label per condition.

    Each unit moves by `offsets` prior standard deviations around the prior
    mean, the other units fixed; a model with a condition gets one traversal
    per row of the condition's grid (one per class), an unconditional one a single one.
    """
    c, labels = condition.grid(dataset, 1)
    c = None if c is None else jnp.asarray(c)
    prior = model.prior_distribution(c, 1)
    base, scale = np.asarray(prior.mean()), prior_spread(prior)
    z = np.stack([traversal_grid(b, s, units, offsets) for b, s in zip(base, scale)])
    per_condition = len(units) * len(offsets)
    c_rows = None if c is None else jnp.repeat(c, per_condition, axis=0)
    decoded = model.decode(jnp.asarray(z.reshape(-1, z.shape[-1])), c_rows).mean()
    images = np.asarray(condition.assemble(decoded, c_rows))
    return images.reshape((len(base), len(units), len(offsets)) + images.shape[1:]), list(labels) or [""]


def learning_curve_series(records: Sequence[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(steps, values) per line of a run's metrics: training -ELBO, the training loss where it differs, validation -ELBO."""

    def series_of(rows, key, sign):
        """(steps, sign * values of key) over the records."""
        return np.array([r["step"] for r in rows]), sign * np.array([r[key] for r in rows], np.float64)

    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    validation = [r for r in records if r.get("split") == "validation" and "elbo" in r]
    series = {}
    if train and all("elbo" in r for r in train):
        elbo = series_of(train, "elbo", -1)
        loss_is_elbo = np.allclose(elbo[1], series_of(train, "loss", 1)[1])
        series["training -ELBO (= the loss)" if loss_is_elbo else "training -ELBO"] = elbo
    if train and not any(name.startswith("training -ELBO (=") for name in series):
        series["training loss (the objective)"] = series_of(train, "loss", 1)
    if validation:
        series["validation -ELBO"] = series_of(validation, "elbo", -1)
    return series


def best_validation(records: Sequence[dict]) -> Optional[dict]:
    """The validation record at which the run took its best checkpoint (the last record's `best_step`)."""
    validation = [r for r in records if r.get("split") == "validation" and "elbo" in r]
    if not validation or validation[-1].get("best_step") is None:
        return None
    return next((r for r in validation if r["step"] == validation[-1]["best_step"]), None)
