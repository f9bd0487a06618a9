"""Conditions: what x and c are. A one-hot class label, or the visible quadrants of an image."""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import zoo
from zoo import Between
from zoo.web import writing

QUADRANT_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclasses.dataclass(frozen=True)
class OneHotLabel:
    """x is the image, c the one-hot class label (the blog's CVAE that writes a requested digit)."""

    image_shape: tuple[int, ...]
    num_classes: int
    class_conditional = True  # c names a class: the harness scores samples with its classifier

    @property
    def x_shape(self):
        return self.image_shape

    @property
    def c_shape(self):
        return (self.num_classes,)

    def split(self, images, labels):
        return images, jax.nn.one_hot(labels, self.num_classes)

    def assemble(self, x, c):
        return x

    def parse(self, text: str, dataset: zoo.Dataset):
        """The classes a typed line writes (zoo.web.writing's rules, the page's): '2026' and '2 026' are four
        digits, names match case-insensitively or by a unique beginning; the gaps are left out."""
        labels = writing.classes(writing.layout(text, dataset.class_names))
        return jax.nn.one_hot(jnp.array(labels), self.num_classes), [dataset.class_names[i] for i in labels]

    def grid(self, dataset: zoo.Dataset, per_row: int):
        labels = np.repeat(np.arange(self.num_classes), per_row)
        return jax.nn.one_hot(labels, self.num_classes), [dataset.class_names[i] for i in range(self.num_classes)]


def is_number(word: str) -> bool:
    """Digits 0-9 only: str.isdigit() also accepts '²', which int() refuses."""
    return re.fullmatch(r"[0-9]+", word) is not None


@dataclasses.dataclass(frozen=True)
class VisibleQuadrants:
    """Sohn et al.'s quadrant completion: c is the visible quadrants, x the hidden pixels."""

    image_shape: tuple[int, ...]
    visible: tuple[int, ...]

    def _masks(self):
        height, width, channels = self.image_shape
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        quadrant = (rows >= height // 2) * 2 + (cols >= width // 2)
        visible = np.isin(quadrant, self.visible)
        flat = np.repeat(visible[..., None], channels, axis=-1).reshape(-1)
        return np.flatnonzero(~flat), np.flatnonzero(flat)

    @property
    def x_shape(self):
        return (len(self._masks()[0]),)

    @property
    def c_shape(self):
        return (len(self._masks()[1]),)

    def split(self, images, labels):
        hidden, visible = self._masks()
        flat = images.reshape((images.shape[0], -1))
        return flat[:, hidden], flat[:, visible]

    def assemble(self, x, c):
        hidden, visible = self._masks()
        flat = jnp.zeros((x.shape[0], len(hidden) + len(visible)), x.dtype)
        flat = flat.at[:, hidden].set(x).at[:, visible].set(c)
        return flat.reshape((x.shape[0],) + tuple(self.image_shape))

    def parse(self, text: str, dataset: zoo.Dataset):
        """Indices of test images whose visible quadrants become the condition."""
        words = [w for w in re.split(r"[,\s]+", text.strip()) if w]
        if not all(is_number(w) for w in words):
            raise zoo.ZooError(f"condition {text!r}: give indices of test images, such as '0 1 2'")
        indices = [int(w) for w in words]
        count = len(dataset.test.images)
        bad = [i for i in indices if not 0 <= i < count]
        if not indices or bad:
            raise zoo.ZooError(f"condition {text!r}: test image indices must lie in 0..{count - 1}")
        _, c = self.split(jnp.asarray(dataset.test.images[indices]), None)
        return c, [f"test #{i}" for i in indices]

    def grid(self, dataset: zoo.Dataset, per_row: int):
        rows = min(10, len(dataset.test.images))
        _, c = self.split(jnp.asarray(np.repeat(dataset.test.images[:rows], per_row, axis=0)), None)
        return c, [f"test #{i}" for i in range(rows)]


def make_onehot_label(image_shape, num_classes) -> OneHotLabel:
    """Class-conditional task: c is the one-hot label.

    >>> make_onehot_label((8, 8, 1), 10).split(images, labels)  # doctest: +SKIP
    """
    if num_classes < 1:
        raise ValueError("the dataset has no class labels, so it cannot condition on them")
    return OneHotLabel(tuple(image_shape), int(num_classes))


def make_visible_quadrants(image_shape, visible: Sequence[Annotated[int, Between(0, 3)]] = (2,)) -> VisibleQuadrants:
    """Quadrant completion: the visible quadrants form c, the hidden pixels are x.

    Quadrants are numbered 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.

    >>> make_visible_quadrants((8, 8, 1), visible=(2,)).split(images, labels)  # doctest: +SKIP
    """
    visible = tuple(sorted(set(visible)))
    if len(image_shape) != 3:
        raise ValueError(f"needs images of shape (height, width, channels), got {tuple(image_shape)}")
    if not visible or len(visible) > 3 or any(q not in range(4) for q in visible):
        raise ValueError(
            f"visible must list 1 to 3 distinct quadrants among 0..3 ({', '.join(QUADRANT_NAMES)}), got {list(visible)}"
        )
    return VisibleQuadrants(tuple(image_shape), visible)


@zoo.hookimpl
def register_components(register):
    """One-hot label and visible-quadrant conditions."""
    register("condition", "onehot_label", make_onehot_label)
    register("condition", "visible_quadrants", make_visible_quadrants)
