"""The conformance suite a plugin author runs on their own component.

    from zoo.testing import check_component
    check_component(registry, "encoder", "resnet", {"depth": 2})

Each check builds a small model around the component (its partners are the
first-party components named in `PARTNERS`, looked up by name) and asserts:
shapes of every distribution, a finite loss, the same loss with and without
jit, and one training step that keeps the loss finite and changes parameters.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.errors import ModelBuildError
from zoo.interfaces import Batch
from zoo.recipes import validate
from zoo.registry import Registry

PARTNERS: dict[str, Any] = {
    "dataset": {"name": "digits"},
    "latent_dim": 4,
    "encoder": {"name": "mlp", "hidden": [16]},
    "decoder": {"name": "mlp", "hidden": [16]},
    "prior": {"name": "standard_normal"},
    "likelihood": {"name": "bernoulli"},
    "objective": {"name": "elbo"},
    "train": {"steps": 1, "batch_size": 4, "learning_rate": 1.0e-3},
}

# The settings a component is tried in; it must work in at least one.
SETTINGS: dict[str, dict[str, Any]] = {
    "unconditional": {},
    "class_conditional": {"condition": {"name": "onehot_label"}},
}

# Tried only when a component works in none of SETTINGS, with the partners it needs: a discrete
# latent (an objective or prior of codes), a ladder of two layers (its prior shares the encoder's
# top-down networks).
FALLBACK_SETTINGS: dict[str, dict[str, Any]] = {
    "discrete_latent": {"encoder": {"name": "vq_mlp", "hidden": [16], "codebook_size": 8, "code_dim": 2},
                        "prior": {"name": "uniform_codebook"}},
    "ladder": {"latent_dim": [2, 2], "encoder": {"name": "ladder_mlp", "hidden": [16]},
               "decoder": {"name": "hierarchical_mlp", "hidden": [16]}},
}


def component_recipe(kind: str, name: str, options: Optional[Mapping[str, Any]] = None,
                     setting: str = "unconditional", partners: Mapping[str, Any] = PARTNERS) -> dict[str, Any]:
    """A small raw recipe with the component under test in its slot."""
    recipe = copy.deepcopy(dict(partners))
    recipe.update(copy.deepcopy({**SETTINGS, **FALLBACK_SETTINGS}[setting]))
    recipe[kind] = {"name": name, **(options or {})}
    return recipe


def check_component(registry: Registry, kind: str, name: str, options: Optional[Mapping[str, Any]] = None,
                    partners: Mapping[str, Any] = PARTNERS) -> list[str]:
    """Run the conformance checks on one component in every setting it supports.

    Returns the settings that passed; raises AssertionError if none does.
    """
    passed, refused = [], []
    for setting in [*SETTINGS, *FALLBACK_SETTINGS]:
        if passed and setting in FALLBACK_SETTINGS:
            break
        raw = component_recipe(kind, name, options, setting, partners)
        recipe = validate(raw, registry, name=f"{kind}:{name}", source="zoo.testing")
        try:
            check_recipe(recipe, registry)
        except ModelBuildError as exc:  # e.g. a conditional prior in the unconditional setting
            refused.append(f"{setting}: {exc}")
            continue
        passed.append(setting)
    assert passed, f"{kind} {name!r} works in no setting: " + "; ".join(refused)
    return passed


def check_recipe(recipe: Mapping[str, Any], registry: Registry, *, batch_size: int = 4, seed: int = 0) -> None:
    """All conformance checks on one resolved recipe."""
    from zoo.train import TrainState, assemble, make_optimizer, make_train_step

    experiment = assemble(recipe, registry)
    model, condition = experiment.model, experiment.condition
    train = experiment.dataset.train
    images, labels = jnp.asarray(train.images[:batch_size]), jnp.asarray(train.labels[:batch_size])
    x, c = condition.split(images, labels)
    check_shapes(model, x, c, batch_size)

    rng = jax.random.key(seed)
    graphdef, params = nnx.split(model)
    batch = Batch(x, c)

    def loss_of(params):
        return experiment.objective(nnx.merge(graphdef, params), batch, rng)[0]

    eager = float(loss_of(params))
    assert np.isfinite(eager), f"{recipe['variant']}: loss is not finite ({eager})"
    jitted = float(jax.jit(loss_of)(params))
    assert np.isclose(eager, jitted, rtol=1e-4, atol=1e-4), f"{recipe['variant']}: loss {eager} eager but {jitted} under jit"

    optimizer = make_optimizer(1e-2)
    before = jax.tree.map(np.array, params)
    state = TrainState(params, optimizer.init(params))
    train_step = make_train_step(graphdef, experiment.objective, condition, optimizer, seed)
    indices = jnp.arange(batch_size, dtype=jnp.int32)[None]
    state, metrics = train_step(state, images, labels, indices, 0, 0)
    assert np.isfinite(float(metrics["loss"])), f"{recipe['variant']}: training step gave a non-finite loss"
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)), state.params, before))
    assert any(changed), f"{recipe['variant']}: one training step changed no parameter"


def check_shapes(model, x, c, batch_size: int) -> None:
    """Every distribution has batch shape (B,) and the right event shape."""
    rng = jax.random.key(1)
    q = model.encode(x, c)
    assert tuple(q.batch_shape) == (batch_size,), f"encoder batch shape {q.batch_shape}, expected ({batch_size},)"
    assert tuple(q.event_shape) == (model.latent_dim,), f"encoder event shape {q.event_shape}, expected ({model.latent_dim},)"
    p = model.prior_distribution(c, batch_size)
    assert tuple(p.batch_shape) == (batch_size,) and tuple(p.event_shape) == (model.latent_dim,), (
        f"prior shapes {p.batch_shape} x {p.event_shape}, expected ({batch_size},) x ({model.latent_dim},)"
    )
    z = q.sample(seed=rng)
    p_x = model.decode(z, c)
    assert tuple(p_x.event_shape) == tuple(model.x_shape), f"likelihood event shape {p_x.event_shape}, expected {model.x_shape}"
    assert p_x.log_prob(x).shape == (batch_size,)
    samples = model.sample(rng, c, num_samples=batch_size)
    assert samples.shape == (batch_size,) + tuple(model.x_shape), f"samples of shape {samples.shape}"
