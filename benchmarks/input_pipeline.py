"""How long the input pipeline takes for one epoch of Fashion-MNIST, once prepared.

The dataset lives on the device; a batch is a gather by indices plus, with
dynamic binarization, one Bernoulli draw per pixel. This times exactly that
work (no model) for every batch of an epoch, next to the same loop with the
gather alone, and to loading the prepared dataset from the TFDS cache.

    .venv/bin/python benchmarks/input_pipeline.py [--data-dir DIR] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import zoo
from zoo.core.data import batch_indices


def time_epoch(batch_fn, images, labels, indices) -> float:
    """Seconds for one epoch of batches through `batch_fn`, after a warm-up compile."""
    jax.block_until_ready(batch_fn(images, labels, indices[0], jax.random.key(0)))
    began = time.perf_counter()
    out = None
    for step, rows in enumerate(indices):
        out = batch_fn(images, labels, rows, jax.random.key(step))
    jax.block_until_ready(out)
    return time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    registry = zoo.default_registry()
    began = time.perf_counter()
    dataset = registry.build("dataset", {"name": "fashion_mnist"}, data_dir=args.data_dir)
    load_seconds = time.perf_counter() - began
    train = dataset.train
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    steps = len(train.images) // args.batch_size
    indices = jnp.asarray(batch_indices(len(train.images), args.batch_size, 0, 0, steps))

    @jax.jit
    def gather(images, labels, rows, key):
        return images[rows], labels[rows]

    @jax.jit
    def gather_and_binarize(images, labels, rows, key):
        return jax.random.bernoulli(key, images[rows]).astype(jnp.float32), labels[rows]

    plain = time_epoch(gather, images, labels, indices)
    binarized = time_epoch(gather_and_binarize, images, labels, indices)
    print(f"Fashion-MNIST train split: {len(train.images)} images, batch {args.batch_size}, {steps} batches per epoch")
    print(f"loading the prepared dataset from the TFDS cache: {load_seconds:.2f} s")
    print(f"one epoch of batches, gather only:              {plain:.3f} s")
    print(f"one epoch of batches, gather + dynamic binarize: {binarized:.3f} s")
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
