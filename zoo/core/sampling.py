"""Drawing samples from a trained model for display."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import jax
import numpy as np
from flax import nnx

if TYPE_CHECKING:
    from zoo.core.assembly import Experiment


def sample_images(
    experiment: Experiment,
    graphdef: nnx.GraphDef,
    params: Any,
    rng: jax.Array,
    *,
    condition_text: Optional[str] = None,
    per_row: int = 8,
    temperature: float = 1.0,
) -> tuple[np.ndarray, list[str], int]:
    """(images (N, H, W, C), row labels, rows): samples of a trained model.

    A CVAE gives one row per class (or per condition the user typed); an
    unconditional model a square-ish grid of `per_row` columns.
    """
    model = nnx.merge(graphdef, params)
    condition = experiment.condition
    if condition_text is not None:
        c, labels = condition.parse(condition_text, experiment.dataset)
        c = np.repeat(np.asarray(c), per_row, axis=0)
    else:
        c, labels = condition.grid(experiment.dataset, per_row)
    if c is None:
        rows = per_row
        x = model.sample(rng, None, num_samples=rows * per_row, temperature=temperature)
    else:
        rows = len(labels)
        x = model.sample(rng, jax.numpy.asarray(c), temperature=temperature)
    images = condition.assemble(x, c)
    return np.asarray(images), labels, rows
