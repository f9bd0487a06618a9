"""The recipe's optimiser: an optax chain (clipping, then the optimiser with its
learning-rate schedule) built from `train.optimizer`, `train.schedule` and
`train.clip_grad_norm`, each checked against optax's own signatures.

    train:
      optimizer: {name: adamw, weight_decay: 1.0e-4}
      schedule: {name: warmup_cosine_decay, warmup_steps: 500, decay_steps: 20000}
      clip_grad_norm: 1.0

Names are optax's functions (`schedule` names without their `_schedule`
suffix); the learning rate fills a schedule's `peak_value` (a warm-up then
starts from `init_value`, 0 unless given), or else its `init_value`/`value`,
unless the schedule gives them.
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from zoo.config import TrainConfig
from zoo.core.groups import ParameterGroup, group_labels
from zoo.core.registry import closest_match

# The optimisers a recipe may name: optax's functions whose first argument is the learning rate.
OPTIMIZERS = (
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "amsgrad",
    "fromage",
    "lamb",
    "lars",
    "lion",
    "nadam",
    "nadamw",
    "novograd",
    "noisy_sgd",
    "radam",
    "rmsprop",
    "sgd",
    "sm3",
    "yogi",
)
# Schedules by the name a recipe uses -> optax function.
SCHEDULES = {
    "constant": "constant_schedule",
    "linear": "linear_schedule",
    "cosine_decay": "cosine_decay_schedule",
    "warmup_cosine_decay": "warmup_cosine_decay_schedule",
    "warmup_constant": "warmup_constant_schedule",
    "exponential_decay": "exponential_decay",
    "piecewise_constant": "piecewise_constant_schedule",
    "polynomial": "polynomial_schedule",
}
LEARNING_RATE_KEYS = ("peak_value", "init_value", "value")  # the first the schedule has is train.learning_rate


class OptionError(ValueError):
    """A bad optimiser or schedule option: `key` is the path below the section, `problem` the words."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def _signature(function: Callable) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


def _hints(function: Callable) -> dict[str, Any]:
    """The annotations of an optax function; where optax's own cannot be resolved (names it does
    not export), the type of each option's default, so a number is still checked as one."""
    try:
        return typing.get_type_hints(function)
    except Exception:
        defaults = {k: p.default for k, p in _signature(function).items() if p.default is not p.empty}
        return {
            k: (float if isinstance(v, float) else type(v))
            for k, v in defaults.items()
            if isinstance(v, (bool, int, float))
        }


def _accepts_number(hint: Any) -> bool:
    """optax's ArrayLike and float/int annotations: a plain number is what a recipe gives."""
    if hint in (int, float):
        return True
    return any(arg in (int, float) for arg in typing.get_args(hint))


def _check_value(key: str, value: Any, hint: Any) -> Any:
    """One option value against optax's annotation, as far as a recipe can express it."""
    optional = type(None) in typing.get_args(hint)
    if value is None:
        if optional:
            return None
        raise OptionError(key, "expected a value, got null")
    if hint is bool:
        if not isinstance(value, bool):
            raise OptionError(key, f"expected a boolean, got {value!r}")
        return value
    if hint is int or (optional and int in typing.get_args(hint) and float not in typing.get_args(hint)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise OptionError(key, f"expected an int, got {value!r}")
        if key.endswith("steps") or key == "transition_begin":
            if value < 0:
                raise OptionError(key, f"expected a number of steps >= 0, got {value}")
        return value
    if _accepts_number(hint):
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads 1e-3 as a string
            except ValueError:
                pass
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise OptionError(key, f"expected a number, got {value!r}")
        return value
    return value


def _check_options(
    kind: str, name: str, function: Callable, options: Mapping[str, Any], skip: tuple[str, ...]
) -> dict[str, Any]:
    """`options` checked against `function`'s keyword parameters (those in `skip` are the zoo's)."""
    parameters = {
        k: p
        for k, p in _signature(function).items()
        if k not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    hints = _hints(function)
    checked = {}
    for key, value in options.items():
        if key not in parameters:
            known = ", ".join(parameters) or "none"
            raise OptionError(
                key, f"unknown option of {kind} {name!r}{closest_match(key, parameters)}; options: {known}"
            )
        checked[key] = _check_value(key, value, hints.get(key, Any))
    return checked


def _spec(spec: Any, kind: str) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise OptionError("name", f"expected a mapping with a 'name' key, got {spec!r}")
    options = dict(spec)
    return str(options.pop("name")), options


def check_optimizer(spec: Any) -> dict[str, Any]:
    """A `train.optimizer` spec checked against optax; returns it with `name` first."""
    name, options = _spec(spec, "optimizer")
    if name not in OPTIMIZERS:
        raise OptionError(
            "name", f"unknown optimizer {name!r}{closest_match(name, OPTIMIZERS)}; known: {', '.join(OPTIMIZERS)}"
        )
    checked = _check_options("optimizer", name, getattr(optax, name), options, ("learning_rate",))
    try:  # built once, so optax's own checks run before any training
        getattr(optax, name)(1e-3, **checked)
    except (TypeError, ValueError) as exc:
        raise OptionError("name", f"optax refuses optimizer {name!r}: {exc}") from None
    return {"name": name, **checked}


def check_schedule(spec: Any, learning_rate: float) -> dict[str, Any]:
    """A `train.schedule` spec checked against optax (and built once, so optax's own checks run)."""
    name, options = _spec(spec, "schedule")
    if name not in SCHEDULES:
        known = ", ".join(SCHEDULES)
        raise OptionError("name", f"unknown schedule {name!r}{closest_match(name, SCHEDULES)}; known: {known}")
    function = getattr(optax, SCHEDULES[name])
    checked = {"name": name, **_check_options("schedule", name, function, options, ())}
    if isinstance(checked.get("boundaries_and_scales"), Mapping):
        checked["boundaries_and_scales"] = {int(k): float(v) for k, v in checked["boundaries_and_scales"].items()}
    arguments = schedule_arguments(checked, learning_rate)
    missing = [k for k, p in _signature(function).items() if p.default is p.empty and k not in arguments]
    if missing:
        raise OptionError(missing[0], f"missing (required by schedule {name!r})")
    try:
        function(**arguments)
    except (TypeError, ValueError) as exc:
        raise OptionError("name", f"optax refuses schedule {name!r}: {exc}") from None
    return checked


def rate_key(schedule_name: Any) -> str | None:
    """The option of a schedule that train.learning_rate fills (peak_value, init_value or value);
    None for a name that is no schedule."""
    if not isinstance(schedule_name, str) or schedule_name not in SCHEDULES:
        return None
    parameters = _signature(getattr(optax, SCHEDULES[schedule_name]))
    return next((key for key in LEARNING_RATE_KEYS if key in parameters), None)


def schedule_steps(spec: Mapping[str, Any]) -> int:
    """The steps a (checked) schedule takes to run its course: a shorter training budget ends it early.
    An exponential decay goes on for ever once begun; it counts until it begins."""
    options = {k: v for k, v in spec.items() if k != "name"}
    begin = int(options.get("transition_begin") or 0)
    if "decay_steps" in options:  # cosine decays; a warm-up's steps are part of them
        return int(options["decay_steps"])
    if spec["name"] == "exponential_decay":
        return begin
    if "transition_steps" in options:  # linear, polynomial
        return begin + int(options["transition_steps"])
    if "warmup_steps" in options:
        return int(options["warmup_steps"])
    return max((int(b) for b in options.get("boundaries_and_scales") or {}), default=0)


def schedule_arguments(spec: Mapping[str, Any], learning_rate: float) -> dict[str, Any]:
    """The keyword arguments of a schedule, its learning-rate values filled from train.learning_rate."""
    arguments = {k: v for k, v in spec.items() if k != "name"}
    main = rate_key(spec["name"])
    if main is not None and main not in arguments:
        arguments[main] = learning_rate
    if main == "peak_value" and "init_value" not in arguments:
        arguments["init_value"] = 0.0  # a warm-up rises from 0 to the learning rate
    return arguments


def learning_rate_schedule(config: TrainConfig) -> Callable[[Any], Any] | float:
    """The learning rate: train.learning_rate, or the schedule of train.schedule."""
    if config.schedule is None:
        return config.learning_rate
    return getattr(optax, SCHEDULES[config.schedule["name"]])(
        **schedule_arguments(config.schedule, config.learning_rate)
    )


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """optax.chain(clip_by_global_norm, optimizer(learning_rate schedule)) from a TrainConfig.

    >>> make_optimizer(TrainConfig(optimizer={"name": "adam"}))  # doctest: +SKIP
    """
    spec = dict(config.optimizer)
    name = spec.pop("name")
    chain = []
    if config.clip_grad_norm is not None:
        chain.append(optax.clip_by_global_norm(config.clip_grad_norm))
    if config.normalize_grad:
        chain.append(normalize_each_gradient())
    chain.append(getattr(optax, name)(learning_rate_schedule(config), **spec))
    return chain[0] if len(chain) == 1 else optax.chain(*chain)


def make_grouped_optimizer(config: TrainConfig, groups: Sequence[ParameterGroup]) -> optax.GradientTransformation:
    """The optimiser of a model trained in parameter groups: one group, `make_optimizer` of its
    settings (train's, unless `train.parameter_groups` names it), the very chain of a model without
    groups; several, each group's own chain over its own parameters (`by_group`).

    >>> make_grouped_optimizer(config, parameter_groups(objective))  # doctest: +SKIP
    """
    if len(groups) == 1:
        return make_optimizer(config.for_group(groups[0].name))
    return by_group({g.name: make_optimizer(config.for_group(g.name)) for g in groups}, groups)


def by_group(
    transforms: Mapping[str, optax.GradientTransformation], groups: Sequence[ParameterGroup]
) -> optax.GradientTransformation:
    """Each group's transformation applied to the leaves of the parameters it owns
    (`zoo.core.groups.group_of`). Its state is `{group: that transformation's state over the
    list of the group's leaves}`: a plain pytree that orbax checkpoints and restores whole."""

    def parts(tree: Any) -> dict[str, list[Any]]:
        labels = group_labels(tree, groups)
        leaves = jax.tree.leaves(tree)
        return {name: [leaf for leaf, label in zip(leaves, labels) if label == name] for name in transforms}

    def init(params: Any) -> dict[str, Any]:
        own = parts(params)
        return {name: transform.init(own[name]) for name, transform in transforms.items()}

    def update(updates: Any, state: Mapping[str, Any], params: Any = None) -> tuple[Any, dict[str, Any]]:
        labels = group_labels(updates, groups)
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        own_params = parts(params) if params is not None else {}
        new_leaves, new_state = list(leaves), {}
        for name, transform in transforms.items():
            where = [i for i, label in enumerate(labels) if label == name]
            own_updates, new_state[name] = transform.update(
                [leaves[i] for i in where], state[name], own_params.get(name)
            )
            for i, leaf in zip(where, own_updates):
                new_leaves[i] = leaf
        return jax.tree_util.tree_unflatten(treedef, new_leaves), new_state

    return optax.GradientTransformation(init, update)


def normalize_each_gradient(eps: float = 1e-7) -> optax.GradientTransformation:
    """Each parameter tensor's gradient divided by its L2 norm (+ eps): the gradient
    normalisation of Tomczak and Welling's AdamNormGrad, applied before the optimiser."""
    return optax.stateless(lambda updates, params=None: jax.tree.map(lambda g: g / (jnp.linalg.norm(g) + eps), updates))


def linear_warmup(steps: int) -> Callable[[Any], Any]:
    """A weight rising linearly from 0 to 1 over `steps` steps (1 from the start when steps is 0)."""
    if steps <= 0:
        return optax.constant_schedule(1.0)
    return optax.linear_schedule(0.0, 1.0, steps)
