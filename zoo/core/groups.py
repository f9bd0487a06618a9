"""Parameter groups: sets of a model's parameters, each trained by its own loss and its own
optax chain, all stepped together in the one jitted training step (zoo/training/step.py).

A plain objective is one group, `model`, owning every parameter and trained by the objective
itself. An objective that needs more (a discriminator beside the VAE, PIWAE's encoder and decoder
on two bounds) declares them in two places:

- on its factory, the group names, so that a recipe's `train.parameter_groups` can be checked
  before anything is built: `factor_vae.parameter_groups = ("model", "discriminator")`;
- on the loss it returns, each group with the parameters it owns and the loss it minimises:
  `loss_fn.parameter_groups = (ParameterGroup("model", (), loss_fn),
  ParameterGroup("discriminator", ("networks.discriminator",), discriminator_loss))`.

A group owns the parameters whose path (`encoder.trunk.layers.0.kernel`) starts with one of its
prefixes, the longest prefix deciding; one group may own `()`: every parameter no other group
owns. Each group's gradient is taken of its own loss with respect to its own parameters only, so
one network's loss never moves another's parameters (the generator's loss leaves the
discriminator alone, and the reverse). Networks an objective adds to the model (a discriminator)
are its `loss_fn.networks = {name: nnx.Module}`, attached as `model.networks[name]`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax

from zoo.core.registry import closest_match
from zoo.errors import ModelBuildError

MODEL_GROUP = "model"


class ParameterGroup(NamedTuple):
    """One set of the model's parameters and the loss that trains it."""

    name: str
    owns: tuple[str, ...] = ()
    """Path prefixes of the parameters it owns (`encoder`, `networks.discriminator`); empty: every
    parameter that no other group owns."""
    loss: Optional[Callable[..., Any]] = None
    """An objective `(model, batch, rng, step=None) -> (loss, metrics)`; None: the recipe's objective."""


def declared_group_names(factory_or_objective: Any) -> tuple[str, ...]:
    """The group names an objective's factory (or the objective) declares; `("model",)` by default."""
    declared = getattr(factory_or_objective, "parameter_groups", None)
    if not declared:
        return (MODEL_GROUP,)
    return tuple(g.name if isinstance(g, ParameterGroup) else str(g) for g in declared)


def parameter_groups(objective: Any) -> tuple[ParameterGroup, ...]:
    """The objective's groups, each with its loss filled in; one group `model` by default."""
    declared = getattr(objective, "parameter_groups", None) or (ParameterGroup(MODEL_GROUP),)
    return tuple(g._replace(loss=g.loss or objective) for g in declared)


def path_name(path: Sequence[Any]) -> str:
    """'encoder.trunk.layers.0.kernel.value': a pytree path with dict keys, attributes and indices alike."""
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def group_of(name: str, groups: Sequence[ParameterGroup]) -> str:
    """The group that owns the parameter at path `name`: the longest matching prefix, else the group owning the rest."""
    best, length = None, -1
    for group in groups:
        for prefix in group.owns:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > length:
                best, length = group.name, len(prefix)
    if best is not None:
        return best
    rest = [g.name for g in groups if not g.owns]
    if not rest:
        raise ModelBuildError(
            f"the parameter {name} belongs to no parameter group ({', '.join(g.name for g in groups)}); "
            "give one group no prefixes to own the rest"
        )
    return rest[0]


def group_labels(params: Any, groups: Sequence[ParameterGroup]) -> list[str]:
    """The group of each leaf of `params`, in `jax.tree.leaves` order."""
    return [group_of(path_name(path), groups) for path, _ in jax.tree_util.tree_leaves_with_path(params)]


def check_groups(params: Any, groups: Sequence[ParameterGroup], objective_name: str) -> None:
    """Refuse groups that own no parameter, or an objective's groups of the same name twice."""
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ModelBuildError(f"objective {objective_name!r} declares a parameter group twice: {', '.join(names)}")
    labels = set(group_labels(params, groups))
    empty = [name for name in names if name not in labels]
    if empty:
        raise ModelBuildError(
            f"objective {objective_name!r}: parameter group {empty[0]!r} owns no parameter of this model"
        )


GroupLoss = Callable[[ParameterGroup, Any], tuple[jax.Array, dict[str, jax.Array]]]


def grouped_value_and_grad(
    group_loss: GroupLoss, params: Any, groups: Sequence[ParameterGroup]
) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    """(loss, metrics, gradients): each group's gradient is that of its own loss, `group_loss(group,
    params)`, with respect to its own parameters only (the others enter as constants). `loss` and the
    metrics are the first group's; every other group's loss is the metric `NAME_loss` and its
    metrics are `NAME_METRIC`."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    labels = group_labels(params, groups)
    gradients: list[Any] = [None] * len(leaves)
    loss, metrics = None, {}
    for group in groups:
        own = [i for i, label in enumerate(labels) if label == group.name]

        def loss_of(own_leaves: list[Any], group: ParameterGroup = group, own: list[int] = own) -> Any:
            merged = list(leaves)
            for i, leaf in zip(own, own_leaves):
                merged[i] = leaf
            return group_loss(group, jax.tree_util.tree_unflatten(treedef, merged))

        (value, group_metrics), own_gradients = jax.value_and_grad(loss_of, has_aux=True)([leaves[i] for i in own])
        for i, gradient in zip(own, own_gradients):
            gradients[i] = gradient
        if loss is None:
            loss, metrics = value, dict(group_metrics)
        else:
            metrics[f"{group.name}_loss"] = value
            metrics.update({f"{group.name}_{k}": v for k, v in group_metrics.items()})
    assert loss is not None, "an objective has at least one parameter group"
    return loss, metrics, jax.tree_util.tree_unflatten(treedef, gradients)


def group_settings_error(
    given: Mapping[str, Any], declared: Sequence[str], objective_name: str
) -> Optional[tuple[str, str]]:
    """(group, problem) for the first group of `train.parameter_groups` that the objective does not
    declare; None when every one is declared."""
    for name in given:
        if name in declared:
            continue
        listing = ", ".join(declared)
        if "discriminator" in str(name) and not any("discriminator" in d for d in declared):
            problem = f"objective {objective_name!r} has no discriminator; its parameter groups: {listing}"
        else:
            problem = (
                f"objective {objective_name!r} has no parameter group {name!r}{closest_match(str(name), declared)}; "
                f"its parameter groups: {listing}"
            )
        return str(name), problem
    return None
