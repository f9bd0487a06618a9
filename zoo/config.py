"""Typed settings of a run (training budget, evaluation) and of a benchmark suite's file, and the
small type checker that recipe validation uses for them and for every factory's keyword arguments."""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from typing import Annotated, Any, Literal, Mapping, Optional, Sequence, Union


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
    # optax: {name: adam, **options}; a schedule {name: cosine_decay, ...}; clipping by global norm (zoo/core/optim.py).
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
    # zoo/training/inputs.py), or "auto": stream when the training split exceeds memory_budget_mb.
    input: Literal["auto", "memory", "stream"] = "auto"
    memory_budget_mb: float = dataclasses.field(default=2048.0, metadata={"positive": True})
    # In memory on one device: "step" (one jitted step per call), "scan" (blocks of steps as a
    # lax.scan), or "auto": time both over the run's first steps and keep the faster (zoo/training/inputs.py).
    loop: Literal["auto", "scan", "step"] = "auto"
    # TensorBoard event files in WORKDIR/tensorboard/ (scalars each log line, samples each checkpoint).
    tensorboard: bool = True
    # The optimiser of each parameter group the objective declares (zoo/core/groups.py), by group name:
    # {discriminator: {learning_rate: 1.0e-4, optimizer: {name: adam, b1: 0.5}}}; a key left out is
    # train's own, and a group left out is trained with train's optimiser.
    parameter_groups: Mapping[str, "ParameterGroupSettings"] = dataclasses.field(default_factory=dict)

    def for_group(self, name: str) -> "TrainConfig":
        """These settings with parameter group `name`'s optimiser settings laid over them."""
        settings: Any = self.parameter_groups.get(name) or {}  # as validated: a mapping of its keys
        given = {k: v for k, v in dict(settings).items() if v is not None}
        return dataclasses.replace(self, parameter_groups={}, **given)

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

    def budget_steps(self, train_size: Optional[int] = None) -> Optional[int]:
        """`total_steps`; None when it counts epochs and the training split's size is not given."""
        if self.epochs is not None and train_size is None:
            return None
        return self.total_steps(train_size or 0)

    def validations(self, train_size: Optional[int] = None) -> Optional[int]:
        """The validations the budget holds, the one at its end included; None when they depend on
        the training split's size and it is not given."""
        if train_size is None and self.epochs is not None and self.validate_every == "epoch":
            return math.ceil(self.epochs)
        if train_size is None and (self.epochs is not None or self.validate_every == "epoch"):
            return None
        return math.ceil(self.total_steps(train_size or 0) / self.validation_period(train_size or 0))


@dataclasses.dataclass(frozen=True)
class ParameterGroupSettings:
    """One entry of `train.parameter_groups`: the optimiser of one parameter group; a key left out
    (null) is the `train:` section's own."""

    learning_rate: Optional[float] = dataclasses.field(default=None, metadata={"positive": True})
    optimizer: Optional[dict] = None
    schedule: Optional[dict] = None
    clip_grad_norm: Optional[float] = dataclasses.field(default=None, metadata={"positive": True})
    normalize_grad: Optional[bool] = None


SelectionMetric = Literal["elbo", "reconstruction_error", "kl", "loss"]


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """`train.early_stopping`: watch a validation metric, stop when it stops improving."""

    patience: int = dataclasses.field(default=50, metadata={"positive": True})
    # "loss": the objective's own loss (lower is better), for objectives that are no ELBO.
    metric: SelectionMetric = "elbo"
    # Validations at the start during which the patience counter stays at 0 (the
    # VampPrior code holds it through the KL warm-up).
    grace: int = dataclasses.field(default=0, metadata={"nonnegative": True})

    @property
    def higher_is_better(self) -> bool:
        """ELBO rises as a model improves; reconstruction error and KL fall."""
        return self.metric == "elbo"

    @property
    def validations_to_stop(self) -> int:
        """The fewest validations after which it can stop a run: the first one (always the best so
        far) or the grace, then `patience` without improvement."""
        return max(self.grace, 1) + self.patience


@dataclasses.dataclass(frozen=True)
class Interval:
    """The range of a numeric factory option, as `Annotated[float, Between(0, 1)]`: recipe
    validation refuses a value outside it and names the key (`zoo: error: --set:
    cvae_sohn.objective.alpha: expected a float in [0, 1], got 2`). NaN lies in no range.
    Write it with AtLeast, AtMost, Above or Between."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # low itself excluded: Above(0) is "> 0"
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return bool(above and below)

    def words(self) -> str:
        """'>= 1', '> 0', '<= 1', 'in [0, 1]', ...: what follows 'an int' or 'a float'."""
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low == -math.inf:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


class AtLeast(Interval):
    """`bound` or more: `Annotated[int, AtLeast(1)]` (a count), `AtLeast(0)` (a weight)."""

    def __init__(self, bound: float):
        super().__init__(low=bound)


class AtMost(Interval):
    """`bound` or less."""

    def __init__(self, bound: float):
        super().__init__(high=bound)


class Above(Interval):
    """More than `bound`: `Above(0)` for a scale, which must be positive."""

    def __init__(self, bound: float):
        super().__init__(low=bound, low_open=True)


class Between(Interval):
    """From `low` to `high`, both included: `Between(0, 1)` for a probability or a mixing weight."""

    def __init__(self, low: float, high: float):
        super().__init__(low=low, high=high)


# A count or a length: more than 0 and finite (an epoch budget of .inf would never end).
POSITIVE = Interval(low=0, low_open=True, high_open=True)


@dataclasses.dataclass(frozen=True)
class SuiteBudget:
    """A suite's `budget:`, the same for each of its runs; a key left out keeps each recipe's own."""

    steps: Optional[Annotated[int, AtLeast(1)]] = None
    # Passes over the training split, in place of steps (a suite gives one of them or neither).
    epochs: Optional[Annotated[float, POSITIVE]] = None
    # Wall seconds per run: training stops there as if its budget were spent.
    max_seconds: Optional[Annotated[float, POSITIVE]] = None
    batch_size: Optional[Annotated[int, AtLeast(1)]] = None


@dataclasses.dataclass(frozen=True)
class SuiteEvaluation:
    """A suite's `eval:`: how each run is evaluated, at its best checkpoint."""

    # Importance samples K per example (0 skips the estimate).
    num_samples: Annotated[int, AtLeast(0)] = 1000
    split: Literal["train", "validation", "test"] = dataclasses.field(
        default="test", metadata={"expected": "train, validation or test"}
    )
    # Only the first `limit` examples of the split.
    limit: Optional[Annotated[int, AtLeast(1)]] = None
    # Samples per class that the harness classifier reads, for a class-conditional model's accuracy.
    accuracy_samples: Annotated[int, AtLeast(0)] = 100
    proposals: Sequence[Literal["posterior", "prior"]] = dataclasses.field(
        default=("posterior",), metadata={"expected": "a list of posterior and/or prior"}
    )
    # The disentanglement metrics against the dataset's ground-truth factors (a dataset with
    # factors, e.g. dsprites): MIG, DCI, the beta-VAE and FactorVAE scores, SAP, modularity.
    disentanglement: bool = False
    # DCI's classifiers: gradient-boosted trees, as disentanglement_lib, or random forests.
    dci_model: Literal["gbt", "forest"] = dataclasses.field(default="gbt", metadata={"expected": "gbt or forest"})


@dataclasses.dataclass(frozen=True)
class PublishedNumber:
    """One entry of a suite's `published:`, a paper's number that reports print beside ours."""

    model: str
    metric: str
    value: Union[float, str]  # a number, or several in words ("100.4 / 61.9 / 25.4")
    source: str
    protocol: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SuiteFile:
    """The keys of a suite file, as zoo.evaluation.bench reads it: which runs (variants x datasets x tasks x
    seeds), under which budget and --set overrides, evaluated how. The messages of list keys are
    worded as they were before this schema existed."""

    variants: Sequence[str] = dataclasses.field(metadata={"expected": "a list of str"})
    name: Optional[str] = None
    description: Optional[str] = None
    # Dataset and task specs, a name or {name: ..., **options}; none: each recipe's own.
    datasets: Sequence[Union[str, dict]] = dataclasses.field(default=(), metadata={"expected": "a list of str or dict"})
    tasks: Sequence[Union[str, dict]] = dataclasses.field(default=(), metadata={"expected": "a list of str or dict"})
    seeds: Sequence[int] = dataclasses.field(default=(), metadata={"expected": "a list of int"})
    # Seeds of some variants in place of `seeds`.
    variant_seeds: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=dict)
    budget: SuiteBudget = SuiteBudget()
    set: Sequence[str] = dataclasses.field(default=(), metadata={"expected": "a list of str"})
    eval: SuiteEvaluation = SuiteEvaluation()
    published: Sequence[PublishedNumber] = ()


def intervals(annotation: Any) -> list[Interval]:
    """The ranges an `Annotated[...]` carries."""
    return [m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Interval)]


class TypeMismatch(Exception):
    """A value does not fit an annotation; carries what was expected."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def describe(annotation: Any) -> str:
    """Words for what an annotation accepts: 'an int', 'a list of ints', ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe(args[0]) + "".join(f" {interval.words()}" for interval in intervals(annotation))
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
    if typing.get_origin(annotation) is typing.Annotated:  # "ints in [0, 3]", not "int in [0, 3]s"
        return _plural(typing.get_args(annotation)[0]) + "".join(
            f" {interval.words()}" for interval in intervals(annotation)
        )
    word = describe(annotation)
    for article in ("an ", "a "):
        if word.startswith(article):
            return word[len(article) :] + "s"
    return word


def coerce(value: Any, annotation: Any) -> Any:
    """`value` checked against `annotation` (sequences become tuples); raises TypeMismatch."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is None:
        return value
    if origin is typing.Annotated:
        value = coerce(value, args[0])
        for interval in intervals(annotation):
            if isinstance(value, (int, float)) and value not in interval:
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
        return typing.get_type_hints(target, include_extras=True)  # keep Annotated ranges (Interval)
    except Exception:  # unresolvable annotations: skip type checks rather than fail
        return {}
