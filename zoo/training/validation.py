"""Validation: the bound metrics of a batch (ELBO, KL, reconstruction error) and one
per-batch function applied over a whole split, on one device or split over a mesh.

Training validates with these every `train.validate_every`; zoo/evaluation/evaluate.py
builds the full evaluation of a trained run on them.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.core.interfaces import Batch, DiscretePosterior, Split
from zoo.errors import DataError
from zoo.progress import Progress
from zoo.training import parallel
from zoo.training.programs import kept_program


def make_bound_metrics(
    graphdef: nnx.GraphDef, condition, objective: Optional[Callable] = None, structure: Optional[Hashable] = None
) -> Callable:
    """A jitted `(params, images, labels, rng) -> per-example metrics` for one batch; with an
    `objective`, also its loss on the batch (`loss`, the batch's value on each of its rows).

    Kept per model structure (zoo.training.programs): without an objective the program closes
    over the GraphDef and the condition alone; with one, only with the run's `structure`
    (zoo.core.assembly.program_structure), which says what the objective is made from."""
    if objective is None:
        key: Optional[Hashable] = ("bound_metrics", graphdef, condition)
    else:
        key = None if structure is None else ("bound_metrics_with_loss", graphdef, condition, structure)
    return kept_program(key, lambda: bound_metrics_program(graphdef, condition, objective))


def bound_metrics_program(graphdef: nnx.GraphDef, condition, objective: Optional[Callable]) -> Callable:
    """The program of `make_bound_metrics`, built anew."""

    @jax.jit
    def bound_metrics(params, images, labels, rng):
        model = nnx.merge(graphdef, params)
        x, c = condition.split(images, labels)
        q, prior, _, _, log_likelihood, kl = model.elbo_terms(x, c, rng)  # a hierarchy scores q(z) while drawing z
        reconstruction = model.decode(q.mean(), c).mean()
        squared_error = jnp.sum((reconstruction - x).reshape((x.shape[0], -1)) ** 2, axis=-1)
        metrics = {
            "elbo": log_likelihood - kl,
            "kl": kl,
            "reconstruction_error": squared_error,
            "posterior_mean": q.mean() - prior.mean(),
        }
        if isinstance(q, DiscretePosterior):  # how often each code is chosen, summed over positions
            metrics["code_counts"] = jnp.sum(jax.nn.one_hot(q.codes, q.num_codes), axis=-2)
        if objective is not None:  # at full weight (step None: past any warm-up)
            loss, _ = objective(model, Batch(x, c), rng)
            metrics["loss"] = jnp.full(x.shape[:1], loss)
        return metrics

    return bound_metrics


def over_batches(
    function: Callable,
    params: Any,
    split: Split,
    rng: jax.Array,
    batch_size: int,
    mesh: Optional[parallel.Mesh] = None,
    progress: Optional[Progress] = None,
) -> Any:
    """Apply a per-batch function to a whole split and concatenate its per-example outputs.

    With a `mesh`, each batch is split over its devices (a short last batch is
    padded with copies of its first row, whose outputs are dropped). `progress`
    counts the examples done.
    """
    if not len(split.images):
        raise DataError("cannot evaluate an empty split")
    outputs: list[Any] = []
    for index, start in enumerate(range(0, len(split.images), batch_size)):
        images, labels = split.images[start : start + batch_size], split.labels[start : start + batch_size]
        count = len(images)
        images, labels = (place_batch(a, mesh) for a in (images, labels))  # type: ignore[assignment]
        result = parallel.to_host(function(params, images, labels, jax.random.fold_in(rng, index)))
        outputs.append(jax.tree.map(lambda a: a[:count], result))  # noqa: B023  (applied at once)
        if progress is not None:
            progress.update(count)
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def place_batch(rows: np.ndarray, mesh: Optional[parallel.Mesh]) -> jax.Array:
    """A batch on the device, or padded to the mesh size and split over its devices."""
    if mesh is None:
        return jnp.asarray(rows)
    padding = parallel.padded_size(len(rows), mesh) - len(rows)
    padded = np.concatenate([rows, np.repeat(rows[:1], padding, axis=0)]) if padding else rows
    return parallel.global_array(padded, parallel.batch_sharded(mesh))
