"""Generation behind the handwriting page: requests in, image arrays out.

A `PageGenerator` holds one trained run. Class-conditional models write the
classes a user typed; unconditional ones give a grid of samples and a 2-D
latent walk. Every call is jitted at a few fixed batch sizes, so typing one
more character never compiles anything.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.web import writing
from zoo.config import MAX_SEED
from zoo.errors import ZooError

MAX_INPUT_LENGTH = 64  # classes per request: one row of the page
MAX_TEXT_CHARS = 1000  # longer text is refused before parsing
BATCH_SIZES = (8, 16, 32, 64)
GRID_SIDE = 8
WALK_SIDE = 8
WALK_SPREAD = 2.0  # the walk spans +-2 standard deviations of the posterior means
MAX_TEMPERATURE = 3.0
WALK_EXAMPLES = 2000  # test images whose posterior means set the walk's directions


class RequestError(ZooError):
    """A request the page's API refuses; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def servable_kind(experiment) -> str:
    """'conditional' or 'unconditional'; other conditions (e.g. quadrants) are refused."""
    if not experiment.model.conditional:
        return "unconditional"
    if getattr(experiment.condition, "class_conditional", False):
        return "conditional"
    name = (experiment.recipe.get("condition") or {}).get("name", "?")
    raise ZooError(
        f"the page writes classes or samples freely; this run's condition {name!r} is neither "
        "class-conditional nor absent"
    )


def bucket(count: int) -> int:
    """The smallest fixed batch size that holds `count` rows."""
    return next(size for size in BATCH_SIZES if size >= count)


def row_keys(key: jax.Array, count: int) -> jax.Array:
    """One key per row, each depending only on the row's index (so padding never changes a sample)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(count))


def sample_rows(graphdef, condition, params, key, c, temperature, count: int):
    """`count` samples (one per row of c, or unconditional), each from its own row key."""
    model = nnx.merge(graphdef, params)
    keys = row_keys(key, count)
    if c is None:
        x = jax.vmap(lambda k: model.sample(k, None, 1, temperature)[0])(keys)
    else:
        x = jax.vmap(lambda k, row: model.sample(k, row[None], 1, temperature)[0])(keys, c)
    return condition.assemble(x, c)


def decode_mean(graphdef, params, z):
    """Mean of p(x | z) for an unconditional model."""
    return nnx.merge(graphdef, params).decode(z, None).mean()


def walk_basis(experiment, graphdef, params) -> dict[str, list]:
    """Centre, two leading principal directions and their spreads of the test set's posterior means."""
    test = experiment.dataset.test
    images = np.asarray(test.images[:WALK_EXAMPLES], np.float32)
    x, c = experiment.condition.split(jnp.asarray(images), None)
    means = np.asarray(jax.jit(lambda p, x: nnx.merge(graphdef, p).encode(x, c).mean())(params, x), np.float64)
    centre = means.mean(axis=0)
    _, singular, directions = np.linalg.svd(means - centre, full_matrices=False)
    spread = singular[:2] / math.sqrt(max(len(means) - 1, 1))
    directions = directions[:2]
    if len(directions) < 2:  # a 1-D latent: the walk is a line, the same in every row
        directions, spread = np.vstack([directions, np.zeros_like(directions)]), np.append(spread, 0.0)
    return {"centre": centre.tolist(), "directions": directions.tolist(), "spread": spread.tolist()}


def walk_latents(basis: dict[str, list], side: int = WALK_SIDE) -> np.ndarray:
    """z on a side x side grid over the two directions, row-major (rows along the second)."""
    centre, directions, spread = (np.asarray(basis[k]) for k in ("centre", "directions", "spread"))
    steps = np.linspace(-WALK_SPREAD, WALK_SPREAD, side)
    b, a = np.meshgrid(steps, steps, indexing="ij")
    return (
        centre + a.reshape(-1, 1) * spread[0] * directions[0] + b.reshape(-1, 1) * spread[1] * directions[1]
    ).astype(np.float32)


def page_info(experiment, step: int) -> dict[str, Any]:
    """What the page needs to lay itself out: kind, classes, shapes and limits."""
    kind = servable_kind(experiment)
    dataset = experiment.dataset
    names = [str(n) for n in dataset.class_names]
    return {
        "kind": kind,
        "variant": experiment.recipe.get("variant"),
        "step": step,
        "dataset": dataset.name,
        "class_names": names if kind == "conditional" else [],
        "digits": names == [str(i) for i in range(len(names))],
        "latent_dim": experiment.model.latent_dim,
        "image_shape": list(dataset.image_shape),
        "max_input_length": MAX_INPUT_LENGTH,
        "max_text_chars": MAX_TEXT_CHARS,
        "max_temperature": MAX_TEMPERATURE,
        "grid_side": GRID_SIDE,
        "walk_side": WALK_SIDE,
        "walk_spread": WALK_SPREAD,
        "gap_characters": writing.GAP_CHARACTERS,
        "whitespace": writing.WHITESPACE,
    }


class PageGenerator:
    """One trained run's generative path, for the page and its JSON API."""

    def __init__(self, experiment, graphdef, params, step: int):
        self.kind = servable_kind(experiment)
        self.experiment, self.graphdef, self.params, self.step = experiment, graphdef, params, step
        condition = experiment.condition
        self._sample = {n: jax.jit(partial(sample_rows, graphdef, condition, count=n)) for n in BATCH_SIZES}
        self._decode = jax.jit(partial(decode_mean, graphdef))
        self.walk = walk_basis(experiment, graphdef, params) if self.kind == "unconditional" else None

    def info(self) -> dict[str, Any]:
        """What the page needs to lay itself out."""
        return page_info(self.experiment, self.step)

    def warm_up(self) -> None:
        """Compile every batch size now rather than on the first requests."""
        if self.kind == "unconditional":
            self.grid()
            self.walk_images()
            return
        for size in BATCH_SIZES:
            self._run(size, np.zeros((size,) + self.experiment.model.c_shape, np.float32), 1.0, 0)

    def sample(self, text: Any, temperature: Any = 1.0, seed: Any = 0) -> dict[str, Any]:
        """The typed line: a fresh sample per class, and the layout (class indices, None for gaps) that
        places them as typed."""
        if self.kind != "conditional":
            raise RequestError("this model is unconditional: ask /api/grid or /api/walk instead of /api/sample")
        if not isinstance(text, str):
            raise RequestError(f"'text' must be a string of classes, got {type(text).__name__}")
        if len(text) > MAX_TEXT_CHARS:
            raise RequestError(f"the text is {len(text)} characters; at most {MAX_TEXT_CHARS}", 413)
        names = [str(name) for name in self.experiment.dataset.class_names]
        try:
            tokens = writing.layout(text, names)
        except ZooError as exc:
            raise RequestError(str(exc)) from None
        classes = writing.classes(tokens)
        if len(classes) > MAX_INPUT_LENGTH:
            raise RequestError(f"{len(classes)} classes asked for; at most {MAX_INPUT_LENGTH} at a time", 413)
        # a class-conditional condition's c is the one-hot class (zoo.core.interfaces.Condition)
        c = np.eye(self.experiment.model.c_shape[0], dtype=np.float32)[classes]
        images = self._run(len(classes), c, *check_sampling(temperature, seed))
        return {**image_payload(images, [names[k] for k in classes]), "layout": tokens}

    def grid(self, temperature: Any = 1.0, seed: Any = 0) -> dict[str, Any]:
        """A GRID_SIDE x GRID_SIDE grid of samples of an unconditional model."""
        self._require_unconditional("grid")
        return image_payload(self._run(GRID_SIDE**2, None, *check_sampling(temperature, seed)), [])

    def walk_images(self) -> dict[str, Any]:
        """The 2-D latent walk: decoded means over the two leading principal directions."""
        self._require_unconditional("walk")
        assert self.walk is not None  # an unconditional model has one
        images = self._decode(self.params, jnp.asarray(walk_latents(self.walk)))
        return image_payload(self.experiment.condition.assemble(images, None), [])

    def _require_unconditional(self, what: str) -> None:
        if self.kind != "unconditional":
            raise RequestError(f"the {what} is for unconditional models; this one writes classes: ask /api/sample")

    def _run(self, count: int, c: Optional[np.ndarray], temperature: float, seed: int) -> np.ndarray:
        size = bucket(count)
        if c is not None:
            c = np.concatenate([c, np.zeros((size - count,) + c.shape[1:], c.dtype)])
        images = self._sample[size](self.params, jax.random.key(seed), c, jnp.float32(temperature))
        return np.asarray(images)[:count]


def check_sampling(temperature: Any, seed: Any) -> tuple[float, int]:
    """A valid (temperature, seed) pair from a request, or a RequestError saying which is wrong."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature <= MAX_TEMPERATURE
    ):
        raise RequestError(f"'temperature' must be a number in [0, {MAX_TEMPERATURE}], got {temperature!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise RequestError(f"'seed' must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return float(temperature), seed


def image_payload(images: Any, labels: Sequence[str]) -> dict[str, Any]:
    """Images (N, H, W, C) as JSON: each a flat row-major list in [0, 1], 3 decimals."""
    array = np.clip(np.asarray(images, np.float64), 0.0, 1.0)
    return {
        "shape": list(array.shape[1:]),
        "labels": [str(label) for label in labels],
        "images": np.round(array.reshape(array.shape[0], -1), 3).tolist(),
    }
