"""What each kind of component is: the contracts plugins implement.

Every probabilistic part returns a `distrax.Distribution` whose batch shape is
the data batch `(B,)`:

- encoder  `(x, c) -> q(z | x, c)`, event shape `(latent_dim,)`
- prior    `(c, batch_size) -> p(z | c)`, event shape `(latent_dim,)`
- decoder  `(z, c) -> raw parameters` of shape `(B, *x_shape, params_per_dim)`
- likelihood `(parameters) -> p(x | z, c)`, event shape `x_shape`
- objective  `(model, batch, rng, step=None) -> (loss, metrics)`, a pure function
- condition  splits a batch of images and labels into `(x, c)`
- dataset    a `Dataset` of images in [0, 1] with labels

The condition `c` is optional everywhere: `None` for unconditional models.

The latent is "continuous" (densities over R^D) unless the encoder and prior
declare `latent_kind = "discrete"` (a VQ-VAE's codes); the two must agree, and
an objective lists the kinds it works with in `latent_kinds` (default:
continuous only). An encoder whose posterior is no importance-sampling
proposal sets `log_likelihood_undefined` to the reason; evaluation then
reports that log-likelihood as not defined (None), never a number.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Optional, Protocol, Sequence, runtime_checkable

import distrax
import jax
import numpy as np

Array = jax.Array
Shape = tuple[int, ...]


class Batch(NamedTuple):
    """What an objective sees: the data `x` and its condition `c` (None if unconditional)."""

    x: Array
    c: Optional[Array] = None


@runtime_checkable
class Encoder(Protocol):
    """q(z | x, c): an nnx.Module returning a distribution over z."""

    def __call__(self, x: Array, c: Optional[Array]) -> distrax.Distribution: ...


@runtime_checkable
class Prior(Protocol):
    """p(z | c): an nnx.Module returning a distribution over z for `batch_size` rows."""

    def __call__(self, c: Optional[Array], batch_size: int) -> distrax.Distribution: ...


@runtime_checkable
class Decoder(Protocol):
    """An nnx.Module mapping (z, c) to raw likelihood parameters `(B, *output_shape)`."""

    def __call__(self, z: Array, c: Optional[Array]) -> Array: ...


@runtime_checkable
class Likelihood(Protocol):
    """Turns decoder parameters `(B, *x_shape, params_per_dim)` into p(x | z, c)."""

    params_per_dim: int

    def __call__(self, params: Array) -> distrax.Distribution: ...


# `(model, batch, rng, step=None) -> (loss, metrics)`; step is the training step, for schedules.
Objective = Callable[..., tuple[Array, dict[str, Array]]]

LATENT_KINDS = ("continuous", "discrete")


def latent_kind(component) -> str:
    """The kind of latent an encoder or prior works with: its `latent_kind`, "continuous" by default."""
    return getattr(component, "latent_kind", "continuous")


def objective_latent_kinds(objective) -> tuple[str, ...]:
    """The latent kinds an objective works with: its `latent_kinds`, ("continuous",) by default."""
    return tuple(getattr(objective, "latent_kinds", ("continuous",)))


@runtime_checkable
class DiscretePosterior(Protocol):
    """What the posterior of a discrete latent offers besides a distrax distribution's methods:
    the chosen codes `(B, positions)` out of `num_codes`, for code-usage metrics."""

    codes: Array
    num_codes: int


@runtime_checkable
class Condition(Protocol):
    """What x and c are for a task: a pure split of images and labels.

    A condition whose c is a one-hot class also sets `class_conditional = True`,
    and its `grid` then gives one-hot rows; the benchmark harness scores such
    models by how often its classifier sees the requested class.
    """

    x_shape: Shape
    c_shape: Shape

    def split(self, images: Array, labels: Array) -> tuple[Array, Array]: ...

    def assemble(self, x: Array, c: Array) -> Array:
        """Images `(B, H, W, C)` to show, from x (or its reconstruction) and c."""
        ...

    def parse(self, text: str, dataset: "Dataset") -> tuple[Array, list[str]]:
        """A condition batch from the user's words (e.g. '2026'), with a label per row."""
        ...

    def grid(self, dataset: "Dataset", per_row: int) -> tuple[Array, list[str]]:
        """Conditions for a sample grid: one row per class (or per test image)."""
        ...


class Split(NamedTuple):
    """One split of a dataset: images `(N, H, W, C)` float32 in [0, 1], labels `(N,)` int32."""

    images: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset's three splits; the test split is only for final numbers.

    With `dynamic_binarization` the training images stay grayscale and every
    batch is a fresh Bernoulli draw (the IWAE protocol); validation and test
    are then binarized once with a fixed seed.
    """

    name: str
    train: Split
    validation: Split
    test: Split
    class_names: Sequence[str]
    dynamic_binarization: bool = False

    @property
    def image_shape(self) -> Shape:
        """(height, width, channels)."""
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        """How many classes the labels take."""
        return len(self.class_names)

    def split(self, name: str) -> Split:
        """The split called `name` (train, validation or test)."""
        if name not in ("train", "validation", "test"):
            from zoo.errors import DataError

            raise DataError(f"unknown split {name!r}; splits are train, validation, test")
        return getattr(self, name)
