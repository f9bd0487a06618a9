"""What each kind of component is: the contracts plugins implement.

These Protocols are the one statement of each contract: docs/plugins.md
mirrors their docstrings (a test checks that it lists every member), type
checkers check plugins against them, and building a model checks every
component's output against them on a tiny batch (`zoo.core.contract`).

Every probabilistic part returns a `distrax.Distribution` whose batch shape is
the data batch `(B,)`:

- encoder  `(x, c) -> q(z | x, c)`, event shape `(latent_dim,)`
- prior    `(c, batch_size) -> p(z | c)`, event shape `(latent_dim,)`
- decoder  `(z, c) -> raw parameters` of shape `(B, *x_shape, params_per_dim)`
- likelihood `(parameters) -> p(x | z, c)`, event shape `x_shape`
- objective  `(model, batch, rng, step=None) -> (loss, metrics)`, a pure function
- condition  splits a batch of images and labels into `(x, c)`
- dataset    a `Dataset` of images in [0, 1] with labels (and, when generated, ground-truth factors)

The condition `c` is optional everywhere: `None` for unconditional models.

The latent is "continuous" (densities over R^D) unless the encoder and prior
declare another `latent_kind` (LATENT_KINDS: "discrete" for a VQ-VAE's codes,
"hyperspherical" or "hyperbolic" for a latent on the sphere or the Poincaré
ball); the two must agree, and
an objective lists the kinds it works with in `latent_kinds` (default:
continuous only). A component or objective for which an evaluation metric does
not apply declares it with the reason, `undefined_metrics = {"log_likelihood":
"why"}` (a VQ-VAE's point-mass posterior is no importance-sampling proposal; the
gsnn objective never trains the encoder); evaluation then reports that metric
as null with the reason under `METRIC_undefined`, never a number.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple, Optional, Protocol, Sequence, runtime_checkable

import distrax
import jax
import numpy as np

from zoo.errors import ModelBuildError

Array = jax.Array
Shape = tuple[int, ...]


class Batch(NamedTuple):
    """What an objective sees: the data `x` and its condition `c` (None if unconditional)."""

    x: Array
    c: Optional[Array] = None


@runtime_checkable
class LatentDistribution(Protocol):
    """q(z | x, c) or p(z | c): a `distrax.Distribution` over z of batch shape `(B,)` and event
    shape `(latent_dim,)`, one row per example. Its methods are traced under `jax.jit` and must
    accept leading sample dimensions: `log_prob` of `(K, B, latent_dim)` gives `(K, B)`. A
    distrax subclass implements `_sample_n` and `log_prob` and inherits the rest.
    """

    @property
    def batch_shape(self) -> Shape:
        """`(B,)`: one distribution per example."""
        ...

    @property
    def event_shape(self) -> Shape:
        """`(latent_dim,)`: one vector z per example (a hierarchy concatenates its layers)."""
        ...

    def sample(self, *, seed: Array, sample_shape: Any = ()) -> Array:
        """Reparameterised z of shape `(*sample_shape, B, latent_dim)`, float (gradients flow through it)."""
        ...

    def log_prob(self, value: Array) -> Array:
        """log density of z `(..., B, latent_dim)`, shape `(..., B)`: normalised, and the density of `sample`."""
        ...

    def sample_and_log_prob(self, *, seed: Array, sample_shape: Any = ()) -> tuple[Array, Array]:
        """`(z, log_prob(z))` in one pass (distrax's default calls both); used when no closed-form KL exists."""
        ...

    def mean(self) -> Array:
        """The centre `(B, latent_dim)`: reconstructions, sampling temperature, plots, active units."""
        ...

    def kl_divergence(self, other: distrax.Distribution) -> Array:
        """KL(self || other), shape `(B,)`, where distrax has a closed form; `NotImplementedError`
        otherwise, and the zoo estimates it from one sample with `sample_and_log_prob`."""
        ...

    def stddev(self) -> Array:
        """Spread per unit `(B, latent_dim)`, used by plots of the prior; `NotImplementedError`
        makes them estimate it from samples."""
        ...


@runtime_checkable
class DataDistribution(Protocol):
    """p(x | z, c), what a likelihood returns: a `distrax.Distribution` of batch shape `(B,)` and
    event shape `x_shape`, every dimension of x in the event, so `log_prob` is one number per
    example, summed over the dimensions of x (neither a mean nor per dimension).
    """

    @property
    def batch_shape(self) -> Shape:
        """`(B,)`."""
        ...

    @property
    def event_shape(self) -> Shape:
        """`x_shape`, the data shape."""
        ...

    def log_prob(self, value: Array) -> Array:
        """log p(x | z, c) of x `(..., B, *x_shape)`, shape `(..., B)`: the training and evaluation term."""
        ...

    def mean(self) -> Array:
        """`(B, *x_shape)`: reconstructions, samples and plots show it."""
        ...

    def mode(self) -> Array:
        """`(B, *x_shape)`: `LatentVariableModel.forward` returns it (any dtype)."""
        ...

    def sample(self, *, seed: Array, sample_shape: Any = ()) -> Array:
        """x of shape `(*sample_shape, B, *x_shape)`; `zoo.testing` checks `log_prob` against it."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """q(z | x, c): an nnx.Module; x is `(B, *x_shape)` float32, c `(B, *c_shape)` float32 or None;
    returns a `LatentDistribution` of batch shape `(B,)` and event shape `(latent_dim,)`.
    Traced under `jax.jit` and differentiated; its output must depend on x.
    """

    def __call__(self, x: Array, c: Optional[Array]) -> distrax.Distribution:
        """q(z | x, c) for the batch."""
        ...


@runtime_checkable
class Prior(Protocol):
    """p(z | c): an nnx.Module; c is `(B, *c_shape)` float32 or None, `batch_size` the int B
    (equal to c's rows when c is given); returns a `LatentDistribution` of batch shape `(B,)`
    and event shape `(latent_dim,)`, even when every row is the same. Traced under `jax.jit`.
    """

    def __call__(self, c: Optional[Array], batch_size: int) -> distrax.Distribution:
        """p(z | c) for `batch_size` rows."""
        ...


@runtime_checkable
class Decoder(Protocol):
    """An nnx.Module mapping z `(B, latent_dim)` float32 and c `(B, *c_shape)` or None to the
    likelihood's raw parameters, a float array `(B, *output_shape)` with `output_shape =
    (*x_shape, params_per_dim)`. Traced under `jax.jit`; its output must depend on z.
    """

    def __call__(self, z: Array, c: Optional[Array]) -> Array:
        """Raw parameters of p(x | z, c)."""
        ...


@runtime_checkable
class Likelihood(Protocol):
    """Turns decoder parameters `(B, *x_shape, params_per_dim)` into p(x | z, c), a
    `DataDistribution`. It is given no data shape, so it works for any; traced under `jax.jit`.
    """

    params_per_dim: int
    """How many raw parameters per dimension of x it needs (a positive int)."""

    # Optional: `data_kind`, what its log_prob is of (DATA_KINDS): "binary" (x in {0, 1}), "8bit" (a
    # probability of each value k / 255), "unit_interval" (a density on [0, 1]) or "real" (a density on
    # R). On 8-bit data evaluation reports bits/dim for the last three (zoo.evaluation.bits); the
    # conformance suite sums "8bit" over the 256 values and integrates "unit_interval" over [0, 1].

    def __call__(self, params: Array) -> distrax.Distribution:
        """p(x | z, c) from the parameters."""
        ...


@runtime_checkable
class Objective(Protocol):
    """A pure function `(model, batch, rng, step=None) -> (loss, metrics)`: `model` a
    `LatentVariableModel`, `batch` a `Batch`, `rng` a PRNG key, `step` the training step (a
    traced int, None outside training) for schedules; an objective without `step` is called
    `(model, batch, rng)`. `loss` is a scalar to minimise, `metrics` a dict of scalars (an
    `elbo` entry is logged). Traced under `jax.jit` and differentiated. An objective trained in
    several parameter groups, each on its own loss and optimiser (a discriminator beside the VAE),
    declares them as `loss_fn.parameter_groups` and the networks it adds as `loss_fn.networks`
    (`zoo.core.groups`); the function itself is then its first group's loss.
    """

    def __call__(
        self, model: Any, batch: Batch, rng: Array, step: Optional[Array] = None
    ) -> tuple[Array, dict[str, Array]]:
        """(loss, metrics) of one batch."""
        ...


class DenseNetwork(NamedTuple):
    """A network of dense layers as plain arrays, what `DenseExportable.dense_network` returns:
    `h = activation(h @ kernel + bias)` for each of `layers` in order, then each head
    `h @ kernel + bias` of the last h. Its input is a decoder's `[z, c]` (z alone without a
    condition), a prior network's c, flat per row."""

    layers: Sequence[tuple[Array, Array]]
    """`(kernel (in, out), bias (out,))` of each hidden layer, input side first; each is followed by `activation`."""
    activation: str
    """The activation's name: relu, tanh, elu, gelu, softplus or swish (the page has each)."""
    heads: Mapping[str, tuple[Array, Array]]
    """`(kernel, bias)` of each linear output by name: a decoder's `out` gives its raw parameters flat per row
    (`(B, prod(output_shape))`); a Gaussian prior network's `loc` and `log_scale` give N(loc, diag(exp(log_scale)^2))."""
    fixed_scale: Optional[float] = None
    """A prior network's constant scale, which then replaces its `log_scale` head."""


@runtime_checkable
class DenseExportable(Protocol):
    """A decoder, or a prior p(z | c), that is dense layers and linear heads: what `zoo export-web`
    runs in the browser, reading it only through this method (and checking it against the component's
    own output on random inputs). A decoder or prior with parameters that lacks it is refused by
    export-web, naming it; a prior without parameters is taken to be N(0, I), and checked so.
    """

    def dense_network(self) -> DenseNetwork:
        """The network's arrays; `NotImplementedError` with the reason when this instance is not one
        (e.g. gated layers, a clipped log-variance)."""
        ...


# "continuous": densities over R^D; "discrete": codes (against counting measure); "hyperspherical"
# and "hyperbolic": densities on the unit sphere and on the Poincaré ball, against the manifold's
# own measure. Encoder and prior must be of one kind, so that log q - log p compares densities
# against the same measure.
LATENT_KINDS = ("continuous", "discrete", "hyperspherical", "hyperbolic")
DATA_KINDS = ("binary", "8bit", "unit_interval", "real")


def data_kind(likelihood: Any) -> Optional[str]:
    """What a likelihood's log_prob is of (DATA_KINDS), or None where it does not say."""
    return getattr(likelihood, "data_kind", None)


def latent_kind(component: Any) -> str:
    """The kind of latent an encoder or prior works with: its `latent_kind`, "continuous" by default."""
    return getattr(component, "latent_kind", "continuous")


def objective_latent_kinds(objective: Any) -> tuple[str, ...]:
    """The latent kinds an objective works with: its `latent_kinds`, ("continuous",) by default."""
    return tuple(getattr(objective, "latent_kinds", ("continuous",)))


# The metrics of evaluation (zoo.evaluation.evaluate) a component may declare undefined: named as for an
# unconditional model; a CVAE's log-likelihoods are reported as conditional_log_likelihood[_prior].
EVALUATION_METRICS = (
    "elbo",
    "kl",
    "reconstruction_error",
    "active_units",
    "codebook_perplexity",
    "log_likelihood",
    "log_likelihood_prior",
)


def undefined_metrics(*components: Any) -> dict[str, str]:
    """Metric -> why it does not apply, from each component's `undefined_metrics` declaration
    (the first reason given for a metric wins). An unknown metric name is a plugin's mistake,
    refused when the model is built."""
    found: dict[str, str] = {}
    for component in components:
        declared = getattr(component, "undefined_metrics", None) or {}
        for metric, reason in declared.items():
            if metric not in EVALUATION_METRICS:
                raise ModelBuildError(
                    f"{type(component).__name__} declares an unknown metric {metric!r} undefined; "
                    f"metrics: {', '.join(EVALUATION_METRICS)}"
                )
            found.setdefault(metric, str(reason))
    return found


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
    models by how often its classifier sees the requested class. `split` and
    `assemble` are traced under `jax.jit`; `parse` and `grid` run eagerly.
    """

    x_shape: Shape
    """The shape of one x (what the model generates)."""
    c_shape: Shape
    """The shape of one c (what it is given)."""

    def split(self, images: Array, labels: Array) -> tuple[Array, Array]:
        """`(x (B, *x_shape), c (B, *c_shape))` float32 from images `(B, H, W, C)` and labels `(B,)`."""
        ...

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
    """One split of a dataset: images `(N, H, W, C)` float32 in [0, 1], labels `(N,)` int32, and
    for a dataset generated from known factors of variation their values `(N, F)` int32."""

    images: np.ndarray
    """`(N, H, W, C)` float32 in [0, 1]; for a dataset larger than memory, an array-like read from
    disk when indexed (shape, dtype, nbytes, len, indexing, `take_rows`)."""
    labels: np.ndarray
    """`(N,)` int32 class indices (zeros for a dataset without classes)."""
    factors: Optional[np.ndarray] = None
    """`(N, F)` int32: example n's value of factor f is `factors[n, f]` in `0..factor_sizes[f] - 1`
    (the dataset's order of `factor_names`); None for a dataset without ground-truth factors."""

    def take(self, rows: Any) -> "Split":
        """The examples at `rows` (indices or a slice), their factors with them. Images read from
        disk when indexed (a streamed dataset's) offer `take_rows`, which selects without reading."""
        take_rows = getattr(self.images, "take_rows", None)
        images = take_rows(rows) if take_rows is not None else self.images[rows]
        return Split(images, self.labels[rows], None if self.factors is None else self.factors[rows])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset's three splits; the test split is only for final numbers.

    With `dynamic_binarization` the training images stay grayscale and every
    batch is a fresh Bernoulli draw (the IWAE protocol); validation and test
    are then binarized once with a fixed seed.

    A dataset generated from known factors of variation (shape, position, ...)
    names them in `factor_names`, with their sizes, and each split holds every
    example's values in `factors`; the disentanglement metrics of evaluation need
    them. Without them (the default) the splits' `factors` are None.
    """

    name: str
    """What reports call it."""
    train: Split
    """The training split."""
    validation: Split
    """For early stopping and the best checkpoint; may be empty."""
    test: Split
    """For final numbers only."""
    class_names: Sequence[str]
    """One name per class (empty for a dataset without labels)."""
    dynamic_binarization: bool = False
    """Whether every training batch is a fresh Bernoulli draw of the grayscale images."""
    factor_names: Sequence[str] = ()
    """The ground-truth factors of variation the images were generated from, in the order of
    each split's `factors` columns (empty for a dataset without them: disentanglement metrics
    need them)."""
    factor_sizes: Sequence[int] = ()
    """How many values each factor takes, one per name."""
    pixel_levels: Optional[int] = None
    """256 for 8-bit images (every pixel is k / 255): evaluation then reports bits/dim beside nats;
    None for binary or continuous data."""

    @property
    def image_shape(self) -> Shape:
        """(height, width, channels)."""
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        """How many classes the labels take."""
        return len(self.class_names)

    @property
    def has_factors(self) -> bool:
        """Whether the splits carry ground-truth factors (`factor_names` is not empty)."""
        return bool(self.factor_names)

    def split(self, name: str) -> Split:
        """The split called `name` (train, validation or test)."""
        if name not in ("train", "validation", "test"):
            from zoo.errors import DataError

            raise DataError(f"unknown split {name!r}; splits are train, validation, test")
        return getattr(self, name)
