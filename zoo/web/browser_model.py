"""A trained model's generative path as plain arrays, computed with the arithmetic of the exported page.

`export-web` runs prior, MLP decoder and likelihood mean in JavaScript. It reads a decoder
and a prior only through the public protocol `zoo.core.interfaces.DenseExportable`, never by
component name or attribute path: `dense_network()` gives the dense layers (each followed by
one named activation) and the linear heads (`out` for a decoder; `loc` and `log_scale`, or
`loc` and a fixed scale, for a Gaussian prior network). The prior is N(0, I) when it has no
parameters. Whatever is declared is then checked against the model itself on random inputs,
and refused if it does not reproduce it. Everything here is float64, as JavaScript's numbers are.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.errors import ZooError
from zoo.core.interfaces import DenseExportable, DenseNetwork

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {  # the same formulas as zoo/web/decoder.js
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))),
    "softplus": lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
}
MEANS: dict[str, Callable[[np.ndarray], np.ndarray]] = {  # likelihood mean from the first parameter per pixel
    "sigmoid": lambda p: 1.0 / (1.0 + np.exp(-p)),
    "identity": lambda p: p,
}
TOLERANCE = 1e-3  # float32 model against float64 arrays, relative to the outputs' size
PROBE_ROWS = 16


class ExportError(ZooError):
    """A model (or part of one) the in-browser page cannot run faithfully."""


@dataclasses.dataclass
class Dense:
    """y = x @ kernel + bias."""

    kernel: np.ndarray
    bias: np.ndarray


@dataclasses.dataclass
class Network:
    """Dense layers with an activation after each, then linear heads."""

    layers: list[Dense]
    activation: str
    heads: dict[str, Dense]

    def __call__(self, h: np.ndarray) -> dict[str, np.ndarray]:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers:
            h = act(h @ layer.kernel + layer.bias)
        return {name: h @ head.kernel + head.bias for name, head in self.heads.items()}

    def tensors(self, prefix: str) -> Iterator[tuple[str, Dense]]:
        """(name, layer) for every dense layer, named as the manifest names it."""
        for index, layer in enumerate(self.layers):
            yield f"{prefix}.layers.{index}", layer
        for name, head in self.heads.items():
            yield f"{prefix}.{name}", head


@dataclasses.dataclass
class BrowserModel:
    """The generative path: z = mu(c) + T sigma(c) eps, then mean of p(x | z, c) from the MLP decoder."""

    decoder: Network
    prior: Optional[Network]  # None: N(0, I)
    fixed_scale: Optional[float]
    mean: str
    params_per_dim: int
    latent_dim: int
    condition_size: int  # 0 for an unconditional model

    def decode(self, z: np.ndarray, c: Optional[np.ndarray]) -> np.ndarray:
        """The decoder's raw outputs, flat per row."""
        inputs = z if c is None else np.concatenate([z, c], axis=-1)
        return self.decoder(np.asarray(inputs, np.float64))["out"]

    def image_mean(self, z: np.ndarray, c: Optional[np.ndarray]) -> np.ndarray:
        """Mean of p(x | z, c), flat per row (pixel-major, parameters innermost)."""
        return MEANS[self.mean](self.decode(z, c)[:, :: self.params_per_dim])

    def prior_moments(self, c: Optional[np.ndarray], rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(loc, scale) of p(z | c), one row each."""
        if self.prior is None:
            return np.zeros((rows, self.latent_dim)), np.ones((rows, self.latent_dim))
        heads = self.prior(np.asarray(c, np.float64))
        scale = np.exp(heads["log_scale"]) if self.fixed_scale is None else np.full_like(heads["loc"], self.fixed_scale)
        return heads["loc"], scale

    def sample(self, noise: np.ndarray, c: Optional[np.ndarray], temperature: float = 1.0) -> np.ndarray:
        """Mean images at z = loc + temperature * scale * noise."""
        loc, scale = self.prior_moments(c, len(noise))
        return self.image_mean(loc + temperature * scale * noise, c)

    def tensors(self) -> Iterator[tuple[str, Dense]]:
        """Every dense layer, decoder first."""
        yield from self.decoder.tensors("decoder")
        if self.prior is not None:
            yield from self.prior.tensors("prior")

    def with_kernels(self, transform: Callable[[np.ndarray], np.ndarray]) -> "BrowserModel":
        """A copy with every kernel replaced by transform(kernel); biases are kept."""

        def network(net: Optional[Network]) -> Optional[Network]:
            if net is None:
                return None
            convert = lambda d: Dense(transform(d.kernel), d.bias)
            return Network(
                [convert(d) for d in net.layers], net.activation, {k: convert(d) for k, d in net.heads.items()}
            )

        return dataclasses.replace(self, decoder=network(self.decoder), prior=network(self.prior))  # type: ignore[arg-type]


def quantise(kernel: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric int8 with one scale per tensor: kernel ~ q * scale, q in [-127, 127]."""
    largest = float(np.max(np.abs(kernel))) if kernel.size else 0.0
    scale = largest / 127.0 if largest > 0 else 1.0
    return np.clip(np.round(kernel / scale), -127, 127).astype(np.int8), scale


def dequantise(kernel: np.ndarray) -> np.ndarray:
    """The kernel as the page holds it after int8 quantisation (float64, as JavaScript computes)."""
    q, scale = quantise(kernel)
    return q.astype(np.float64) * scale


def declared_network(module: Any, what: str, heads: str) -> DenseNetwork:
    """What a component declares through `DenseExportable`, or an ExportError naming it."""
    if not isinstance(module, DenseExportable):
        raise ExportError(
            f"{what} ({type(module).__name__}) is not an MLP: export-web runs dense layers followed by "
            f"linear heads ({heads}), read through zoo.core.interfaces.DenseExportable (`dense_network()`), "
            "which it does not implement"
        )
    try:
        return module.dense_network()
    except NotImplementedError as exc:
        raise ExportError(f"{what} ({type(module).__name__}) is not an MLP export-web can run: {exc}") from None


def dense(pair: Any, inputs: int, where: str) -> Dense:
    """A declared (kernel, bias) as float64 arrays, refused unless kernel is (inputs, n) and bias (n,)."""
    kernel, bias = (np.asarray(array, np.float64) for array in pair)
    if kernel.ndim != 2 or kernel.shape[0] != inputs or bias.shape != kernel.shape[1:]:
        raise ExportError(
            f"{where}: expected a kernel ({inputs}, n) and a bias (n,), got shapes {kernel.shape} and {bias.shape}"
        )
    return Dense(kernel, bias)


def network(declared: DenseNetwork, inputs: int, heads: tuple[str, ...], what: str) -> Network:
    """The Network of a declared DenseNetwork with the named heads, its shapes checked from `inputs` on."""
    if declared.activation not in ACTIVATIONS:
        raise ExportError(
            f"{what}: activation {declared.activation!r} has no in-browser version; known: {', '.join(ACTIVATIONS)}"
        )
    missing = [name for name in heads if name not in declared.heads]
    if missing:
        raise ExportError(
            f"{what}: its dense network has no head {', '.join(map(repr, missing))}; "
            f"export-web needs {', '.join(map(repr, heads))}"
        )
    layers = []
    for index, pair in enumerate(declared.layers):
        layers.append(dense(pair, inputs, f"{what} layer {index}"))
        inputs = layers[-1].kernel.shape[1]
    return Network(
        layers,
        declared.activation,
        {name: dense(declared.heads[name], inputs, f"{what} head {name!r}") for name in heads},
    )


def extract(experiment, graphdef: nnx.GraphDef, params: Any) -> BrowserModel:
    """The run's generative path as a BrowserModel, checked against the model; ExportError if it cannot be."""
    model = nnx.merge(graphdef, params)
    names = {kind: f"{kind} {experiment.recipe[kind]['name']!r}" for kind in ("decoder", "prior", "likelihood")}
    condition_size = int(np.prod(model.c_shape or (0,)))
    declared = declared_network(model.decoder, names["decoder"], "`out`")
    decoder = network(declared, model.latent_dim + condition_size, ("out",), names["decoder"])
    prior, fixed_scale = None, None  # a prior without parameters: checked below to be N(0, I)
    if jax.tree.leaves(nnx.state(model.prior, nnx.Param)):
        declared = declared_network(model.prior, names["prior"], "`loc` and `log_scale`, or `loc` and a fixed scale")
        fixed_scale = declared.fixed_scale
        heads = ("loc",) if fixed_scale is not None else ("loc", "log_scale")
        prior = network(declared, condition_size, heads, names["prior"])
    browser = BrowserModel(
        decoder,
        prior,
        None if fixed_scale is None else float(fixed_scale),
        "identity",
        model.likelihood.params_per_dim,
        model.latent_dim,
        condition_size,
    )
    return check_faithful(browser, model, names)


def check_faithful(browser: BrowserModel, model, names: Mapping[str, str]) -> BrowserModel:
    """Compare decoder, prior and likelihood mean with the model on random inputs; pick the mean's formula."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((PROBE_ROWS, browser.latent_dim))
    c = None
    if browser.condition_size:
        c = np.eye(browser.condition_size)[rng.integers(browser.condition_size, size=PROBE_ROWS)]
    as_jax = lambda a: None if a is None else jnp.asarray(a, jnp.float32)
    raw = np.asarray(model.decoder(as_jax(z), as_jax(c)), np.float64)
    compare(browser.decode(z, c), raw.reshape(PROBE_ROWS, -1), f"{names['decoder']}: dense layers on [z, c]")
    prior = model.prior_distribution(as_jax(c), PROBE_ROWS)
    loc, scale = browser.prior_moments(c, PROBE_ROWS)
    compare(loc, np.asarray(prior.mean()), f"{names['prior']}: the mean of p(z | c)")
    compare(scale, np.asarray(prior.stddev()), f"{names['prior']}: the scale of p(z | c)")
    mean = np.asarray(model.likelihood(jnp.asarray(raw, jnp.float32)).mean(), np.float64).reshape(PROBE_ROWS, -1)
    for formula, function in MEANS.items():
        if np.allclose(function(raw[..., 0].reshape(PROBE_ROWS, -1)), mean, atol=TOLERANCE):
            return dataclasses.replace(browser, mean=formula)
    raise ExportError(
        f"{names['likelihood']}: its mean is not one the page computes "
        f"({' or '.join(MEANS)} of the decoder's first parameter per pixel)"
    )


def compare(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Refuse an export whose arrays do not reproduce the model's within TOLERANCE."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        raise ExportError(f"{what}: the exported network gives shape {ours.shape}, the model {theirs.shape}")
    difference = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    if not difference <= TOLERANCE * max(1.0, float(np.max(np.abs(theirs)))):
        raise ExportError(
            f"{what}: the exported network does not reproduce the model (max difference {difference:.3g})"
        )
