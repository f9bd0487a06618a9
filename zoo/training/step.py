"""The training step: one jitted update of pure state `(params, opt_state)`, driven one step
per call or scanned in blocks by zoo/training/loop.py.

The NNX graph is split once; the step is a plain `jax.jit` (with the state donated), which is
about 20% faster here than `nnx.jit`.
"""

from __future__ import annotations

import inspect
from typing import Any, Hashable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from zoo.core import optim
from zoo.core.groups import grouped_value_and_grad, parameter_groups
from zoo.core.interfaces import Batch
from zoo.core.model import LatentVariableModel
from zoo.training import parallel
from zoo.training.programs import kept_program


class TrainState(NamedTuple):
    """Everything that changes during training, as a pytree."""

    params: Any
    opt_state: Any


def make_optimizer(config) -> optax.GradientTransformation:
    """The recipe's optax chain (a TrainConfig), or Adam at a learning rate given as a number."""
    if isinstance(config, (int, float)):
        return optax.adam(config)
    return optim.make_optimizer(config)


def make_train_step(
    graphdef: nnx.GraphDef,
    objective,
    condition,
    optimizer: optax.GradientTransformation,
    seed: int,
    dynamic_binarization: bool = False,
    mesh: Optional[parallel.Mesh] = None,
    streaming: bool = False,
    structure: Optional[Hashable] = None,
):
    """`(state, images, labels, chunk_indices[n, B], position, step) -> (state, metrics)`,
    jitted with the state donated; with `streaming`, `(state, block_images[n, B, ...], block_labels, position, step)`.

    One step per call, driven from Python (`make_scanned_steps` runs several per
    call). With a `mesh`, the batch is split over its devices and the state
    stays replicated. In memory, the step gathers its batch from the dataset on
    the device; streamed, it takes its batch from a block of a few steps'
    batches. Both then do the same: the same binarization draw and the same
    update for the same step.

    The seed is an argument of the jitted program, so with the run's `structure` (what the
    objective and optimizer are made from: zoo.core.assembly.program_structure) a later run of
    the same structure, whatever its seed, reuses the traced and compiled program.
    """

    def build():
        step_function = train_step_function(
            graphdef, objective, condition, optimizer, dynamic_binarization, mesh, streaming
        )
        if mesh is None:
            return jax.jit(step_function, donate_argnums=0)
        return jax.jit(step_function, donate_argnums=0, out_shardings=parallel.replicated(mesh))

    key = None if structure is None else ("train_step", structure, graphdef, dynamic_binarization, mesh, streaming)
    return Seeded(kept_program(key, build), seed, mesh)


def make_scanned_steps(
    graphdef: nnx.GraphDef,
    objective,
    condition,
    optimizer,
    seed: int,
    dynamic_binarization=False,
    structure: Optional[Hashable] = None,
):
    """`(state, images, labels, chunk_indices[n, B], start) -> (state, metrics[n])`: the in-memory steps
    start..start+n-1 of `make_train_step` in one call, as a `lax.scan` over them, jitted with the state
    donated. The same updates; it saves the per-step dispatch, which is most of a small model's step
    on a CPU, while XLA's CPU backend has run some models (convolutions) several times slower inside
    a scan, so zoo.training.inputs measures both and keeps the faster (`train.loop`)."""

    def build():
        step_function = train_step_function(graphdef, objective, condition, optimizer, dynamic_binarization)

        def scanned(state: TrainState, images, labels, chunk_indices, start, seed):
            def body(state, position):
                return step_function(state, images, labels, chunk_indices, position, start + position, seed)

            return jax.lax.scan(body, state, jnp.arange(chunk_indices.shape[0]))

        return jax.jit(scanned, donate_argnums=0)

    key = None if structure is None else ("scanned_steps", structure, graphdef, dynamic_binarization)
    return Seeded(kept_program(key, build), seed, None)


class Seeded:
    """A jitted step program with its last argument, the seed, given: an int32 on the device
    (replicated over a mesh), made once, so no step converts it again. Called as the step;
    `lower` lowers it with the same arguments (XLA's cost analysis of a step)."""

    def __init__(self, program, seed: int, mesh: Optional[parallel.Mesh]):
        self.program = program
        self.seed = jnp.asarray(seed, jnp.int32)
        if mesh is not None:
            self.seed = parallel.replicate(self.seed, mesh)

    def __call__(self, *args):
        return self.program(*args, self.seed)

    def lower(self, *args):
        return self.program.lower(*args, self.seed)


def train_step_function(
    graphdef: nnx.GraphDef,
    objective,
    condition,
    optimizer: optax.GradientTransformation,
    dynamic_binarization: bool = False,
    mesh: Optional[parallel.Mesh] = None,
    streaming: bool = False,
):
    """The step of `make_train_step`, not jitted; the seed is its last argument."""
    loss_and_gradients = make_loss_and_gradients(graphdef, objective)

    def update(state: TrainState, batch_images, batch_labels, step, seed):
        rng, pixel_rng = step_keys(seed, step)
        if mesh is not None:  # each device binarizes and differentiates its own rows
            batch_images = jax.lax.with_sharding_constraint(batch_images, parallel.batch_sharded(mesh))
        if dynamic_binarization:  # a fresh draw of every pixel each time a batch is drawn
            batch_images = jax.random.bernoulli(pixel_rng, batch_images).astype(batch_images.dtype)
        x, c = condition.split(batch_images, batch_labels)
        loss, metrics, grads = loss_and_gradients(state.params, Batch(x, c), rng, step)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), {"loss": loss, **metrics}

    def train_step(state: TrainState, images, labels, chunk_indices, position, step, seed):
        indices = chunk_indices[position]
        return update(state, images[indices], labels[indices], step, seed)

    def streamed_step(state: TrainState, block_images, block_labels, position, step, seed):
        return update(state, block_images[position], block_labels[position], step, seed)

    return streamed_step if streaming else train_step


def make_loss_and_gradients(graphdef: nnx.GraphDef, objective):
    """`(params, batch, rng, step) -> (loss, metrics, gradients)`: of the objective, or, for an
    objective trained in several parameter groups (zoo/core/groups.py), each group's gradient of its
    own loss (`loss` and `metrics` the first group's, with every other group's loss beside them)."""
    groups = parameter_groups(objective)

    def call(loss, params, batch: Batch, rng, step):
        return loss_at_step(loss, nnx.merge(graphdef, params), batch, rng, step)

    if len(groups) == 1:

        def one_group(params, batch: Batch, rng, step):
            (loss, metrics), grads = jax.value_and_grad(call, argnums=1, has_aux=True)(
                groups[0].loss, params, batch, rng, step
            )
            return loss, metrics, grads

        return one_group

    def several_groups(params, batch: Batch, rng, step):
        return grouped_value_and_grad(lambda group, p: call(group.loss, p, batch, rng, step), params, groups)

    return several_groups


def loss_at_step(loss, model, batch: Batch, rng, step):
    """`(loss, metrics)` of an objective at a training step: given the step where it takes one (for
    its schedules), without it where it is `(model, batch, rng)`."""
    return loss(model, batch, rng, step=step) if takes_step(loss) else loss(model, batch, rng)


def takes_step(objective) -> bool:
    """Whether an objective takes the training step (for its schedules); `(model, batch, rng)` ones do not."""
    try:
        parameters = inspect.signature(objective).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "step" or p.kind is p.VAR_KEYWORD for p in parameters)


def step_keys(seed, step) -> jax.Array:
    """(objective key, pixel key) of one training step: a function of the seed and step alone."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), step))


def step_key(seed: int, step: int) -> jax.Array:
    """The PRNG key the objective gets at one training step."""
    return step_keys(seed, step)[0]


def initial_state(
    model: LatentVariableModel, config, objective=None
) -> tuple[nnx.GraphDef, optax.GradientTransformation, TrainState]:
    """(graphdef, optimizer, state) of an untrained model under the recipe's optimiser: one
    optax chain, or, for an objective trained in several parameter groups, one per group (the
    state holds every group's optimiser state, so a checkpoint keeps and restores them together)."""
    graphdef, params = nnx.split(model)
    if isinstance(config, (int, float)):
        optimizer = make_optimizer(config)
    else:
        optimizer = optim.make_grouped_optimizer(config, parameter_groups(objective))
    return graphdef, optimizer, TrainState(params, optimizer.init(params))
