"""Typed settings of a run (training budget, evaluation) and the small type checker
that recipe validation uses for them and for every factory's keyword arguments."""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from typing import Any, Literal, Optional, Union


# The largest seed a command (--seed) or a request of the page takes: what every PRNG here accepts.
MAX_SEED = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training budget and optimiser settings of a recipe's `train:` section."""

    steps: int = dataclasses.field(default=2000, metadata={"positive": True})
    # A budget in epochs (passes over the training split) replaces `steps` when given.
    epochs: Optional[float] = dataclasses.field(default=None, metadata={"positive": True})
    batch_size: int = dataclasses.field(default=128, metadata={"positive": True})
    learning_rate: float = dataclasses.field(default=1e-3, metadata={"positive": True})
    # optax: {name: adam, **options}; a schedule {name: cosine_decay, ...}; clipping by global norm (zoo/optim.py).
    optimizer: dict = dataclasses.field(default_factory=lambda: {"name": "adam"})
    schedule: Optional[dict] = None
    clip_grad_norm: Optional[float] = dataclasses.field(default=None, metadata={"positive": True})
    normalize_grad: bool = False
    seed: int = dataclasses.field(default=0, metadata={"nonnegative": True})
    log_every: int = dataclasses.field(default=100, metadata={"positive": True})
    checkpoint_every: int = dataclasses.field(default=500, metadata={"positive": True})
    # Validation every N steps, or "epoch"; null: at every checkpoint.
    validate_every: Union[int, Literal["epoch"], None] = dataclasses.field(default=None, metadata={"positive": True})
    # {metric: elbo, patience: 50, grace: 0}: stop after `patience` validations without improvement.
    early_stopping: Optional[dict] = None
    # Data parallelism: the batch is split over this many devices (0 = every device JAX sees).
    devices: int = dataclasses.field(default=1, metadata={"nonnegative": True})
    # How batches reach the device: "memory" (the split on the device), "stream" (grain,
    # zoo/inputs.py), or "auto": stream when the training split exceeds memory_budget_mb.
    input: Literal["auto", "memory", "stream"] = "auto"
    memory_budget_mb: float = dataclasses.field(default=2048.0, metadata={"positive": True})
    # TensorBoard event files in WORKDIR/tensorboard/ (scalars each log line, samples each checkpoint).
    tensorboard: bool = True

    def steps_per_epoch(self, train_size: int) -> int:
        """Steps of one pass over `train_size` examples (the remainder of a pass is dropped)."""
        return max(1, train_size // self.batch_size)

    def total_steps(self, train_size: int) -> int:
        """The budget in steps: `steps`, or `epochs` passes over the training split."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * self.steps_per_epoch(train_size)))

    def validation_period(self, train_size: int) -> int:
        """Steps between validations."""
        if self.validate_every == "epoch":
            return self.steps_per_epoch(train_size)
        return self.validate_every or self.checkpoint_every


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """`train.early_stopping`: watch a validation metric, stop when it stops improving."""

    patience: int = dataclasses.field(default=50, metadata={"positive": True})
    metric: Literal["elbo", "reconstruction_error", "kl"] = "elbo"
    # Validations at the start during which the patience counter stays at 0 (the
    # VampPrior code holds it through the KL warm-up).
    grace: int = dataclasses.field(default=0, metadata={"nonnegative": True})

    @property
    def higher_is_better(self) -> bool:
        """ELBO rises as a model improves; reconstruction error and KL fall."""
        return self.metric == "elbo"


@dataclasses.dataclass(frozen=True)
class AtLeast:
    """A bound on a factory option, as `Annotated[int, AtLeast(1)]`: recipe validation refuses a
    smaller value and names the key (`zoo: error: registry.yaml: iaf_vae.encoder.steps: expected an int >= 1, got 0`)."""

    bound: float


class TypeMismatch(Exception):
    """A value does not fit an annotation; carries what was expected."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def describe(annotation: Any) -> str:
    """Words for what an annotation accepts: 'an int', 'a list of ints', ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        bounds = [f" >= {m.bound:g}" for m in annotation.__metadata__ if isinstance(m, AtLeast)]
        return describe(args[0]) + "".join(bounds)
    if annotation is int:
        return "an int"
    if annotation is float:
        return "a float"
    if annotation is bool:
        return "a boolean"
    if annotation is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        inner = [describe(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    if _is_sequence(origin):
        element = args[0] if args else Any
        return f"a list of {_plural(element)}"
    return getattr(annotation, "__name__", str(annotation))


def _is_sequence(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, collections.abc.Sequence) and origin is not str


def _plural(annotation: Any) -> str:
    word = describe(annotation)
    for article in ("an ", "a "):
        if word.startswith(article):
            return word[len(article):] + "s"
    return word


def coerce(value: Any, annotation: Any) -> Any:
    """`value` checked against `annotation` (sequences become tuples); raises TypeMismatch."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is None:
        return value
    if origin is typing.Annotated:
        value = coerce(value, args[0])
        for bound in (m for m in annotation.__metadata__ if isinstance(m, AtLeast)):
            if isinstance(value, (int, float)) and not value >= bound.bound:
                raise TypeMismatch(describe(annotation))
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise TypeMismatch(describe(annotation))
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeMismatch(describe(annotation))
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise TypeMismatch(describe(annotation))
    if annotation is str:
        if isinstance(value, str):
            return value
        raise TypeMismatch(describe(annotation))
    if origin is Literal:
        if value in args:
            return value
        raise TypeMismatch(describe(annotation))
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except TypeMismatch:
                continue
        raise TypeMismatch(describe(annotation))
    if _is_sequence(origin):
        if not isinstance(value, (list, tuple)):
            raise TypeMismatch(describe(annotation))
        element = args[0] if args else Any
        try:
            return tuple(coerce(v, element) for v in value)
        except TypeMismatch:
            raise TypeMismatch(describe(annotation)) from None
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise TypeMismatch(describe(annotation))
    return value


def type_hints(function: Any) -> dict[str, Any]:
    """Resolved annotations of a callable (strings evaluated); {} when they cannot be."""
    target = function.__init__ if isinstance(function, type) else function  # type: ignore[misc]
    try:
        return typing.get_type_hints(target, include_extras=True)  # keep Annotated bounds (AtLeast)
    except Exception:  # unresolvable annotations: skip type checks rather than fail
        return {}

