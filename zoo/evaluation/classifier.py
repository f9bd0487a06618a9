"""The harness's classifier: how often a CVAE's samples show the class asked for.

An evaluation instrument, not a model component: a one-hidden-layer softmax
classifier trained with optax on the dataset's training split, written as
pure functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.core.interfaces import Dataset


def init(rng: jax.Array, inputs: int, hidden: int, classes: int) -> dict[str, jax.Array]:
    """He-initialised weights of a 1-hidden-layer MLP."""
    first, second = jax.random.split(rng)
    return {
        "w1": jax.random.normal(first, (inputs, hidden)) * np.sqrt(2.0 / inputs),
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(second, (hidden, classes)) * np.sqrt(1.0 / hidden),
        "b2": jnp.zeros(classes),
    }


def logits(params: dict[str, jax.Array], images: jax.Array) -> jax.Array:
    """Class logits for images (N, H, W, C)."""
    h = jax.nn.relu(images.reshape((images.shape[0], -1)) @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def train(
    dataset: Dataset,
    *,
    seed: int = 0,
    steps: int = 3000,
    batch_size: int = 128,
    hidden: int = 256,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Fit the classifier on the training split (Adam, cross-entropy)."""
    from zoo.progress import Progress

    images, labels = jnp.asarray(dataset.train.images), jnp.asarray(dataset.train.labels)
    params = init(jax.random.key(seed), int(np.prod(dataset.image_shape)), hidden, dataset.num_classes)
    optimizer = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state, key):
        rows = jax.random.randint(key, (batch_size,), 0, images.shape[0])
        loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
            logits(p, images[rows]), labels[rows]
        ).mean()
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = optimizer.init(params)
    with Progress(steps, f"training the {dataset.name} classifier", unit="steps", enabled=progress) as bar:
        for index in range(steps):
            params, opt_state = step(params, opt_state, jax.random.fold_in(jax.random.key(seed + 1), index))
            bar.update()
    return jax.tree.map(np.asarray, params)


def accuracy(params: dict[str, Any], images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images classified as their label."""
    predicted = np.argmax(np.asarray(logits(jax.tree.map(jnp.asarray, params), jnp.asarray(images))), axis=-1)
    return float(np.mean(predicted == np.asarray(labels)))


def cached(dataset: Dataset, path: Path, **options: Any) -> dict[str, np.ndarray]:
    """The classifier for `dataset`, trained once and kept in `path` (.npz)."""
    path = Path(path)
    if path.exists():
        with np.load(path) as saved:
            return {key: saved[key] for key in saved.files}
    params = train(dataset, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, **params)  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
    temporary.replace(path)
    return params


# Below this class accuracy of a model's samples, the page draws the wrong class too often to be
# trusted (`zoo serve` and `zoo export-web` warn).
PAGE_ACCURACY_FLOOR = 0.8


def class_samples(experiment, model, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` samples of each class from a class-conditional model (the decoder's means,
    as the page draws them), with the class asked for."""
    c, _ = experiment.condition.grid(experiment.dataset, per_class)  # per_class rows of each class's condition
    images = experiment.condition.assemble(model.sample(jax.random.key(seed + 7), c), c)
    return np.asarray(images), np.argmax(np.asarray(c), axis=-1)


def sample_accuracy(experiment, model, path: Path, per_class: int, seed: int, progress: bool = False) -> float:
    """How often the harness classifier (trained once, kept in `path`) recognises the requested
    class in a class-conditional model's samples, `per_class` samples of each class."""
    weights = cached(experiment.dataset, path, progress=progress)
    images, labels = class_samples(experiment, model, per_class, seed)
    return accuracy(weights, images, labels)


def within_class_spread(images: np.ndarray, labels: np.ndarray) -> float:
    """The per-pixel standard deviation within each class, averaged over pixels and then over
    the classes present: near 0 when every image of a class is the same image."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    return float(np.mean([flat[labels == label].std(axis=0).mean() for label in np.unique(labels)]))


def sample_diversity(images: np.ndarray, labels: np.ndarray, dataset: Dataset, per_class: int = 1000) -> float:
    """The within-class spread of a model's samples over that of the real training images (at
    most `per_class` of each class): about 1 when a class's samples vary as its images do, near
    0 when they have collapsed to one image. Class accuracy alone cannot see the second case
    (a class's average image is recognised every time)."""
    real_images = np.asarray(dataset.train.images, dtype=np.float32)
    real_labels = np.asarray(dataset.train.labels)
    keep = np.concatenate([np.flatnonzero(real_labels == label)[:per_class] for label in np.unique(labels)])
    return within_class_spread(images, labels) / within_class_spread(real_images[keep], real_labels[keep])


def sample_checks(experiment, model, path: Path, per_class: int, seed: int) -> dict[str, float]:
    """Class accuracy and diversity of the same `per_class` samples of each class, with the
    classifier's accuracy on the real test images beside them."""
    weights = cached(experiment.dataset, path)
    images, labels = class_samples(experiment, model, per_class, seed)
    test = experiment.dataset.test
    return {
        "class_accuracy": accuracy(weights, images, labels),
        "sample_diversity": sample_diversity(images, labels, experiment.dataset),
        # The instrument's own reading of real images: samples as varied as the data cannot
        # score much above it, so a class accuracy far above it signals prototypes, not images.
        "classifier_test_accuracy": accuracy(weights, np.asarray(test.images), np.asarray(test.labels)),
    }


def accuracy_notice(class_accuracy: float, samples: int) -> list[str]:
    """What `zoo serve` and `zoo export-web` say of the model's class accuracy: one line, and a
    warning below PAGE_ACCURACY_FLOOR."""
    lines = [f"class accuracy of the model's samples: {class_accuracy:.2f} ({samples} samples, the harness classifier)"]
    if class_accuracy < PAGE_ACCURACY_FLOOR:
        lines.append(
            f"warning: below {PAGE_ACCURACY_FLOOR:.1f}: the page will often draw the wrong class for a name typed; "
            "train the model longer, or use a recipe made for the page (cvae_fashion on Fashion-MNIST)"
        )
    return lines
