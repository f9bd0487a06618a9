"""Seconds per training epoch of each fashion_paper variant beside vae_paper, in one process.

The variants' jitted steps are timed in alternating rounds (vae_paper, then
each other variant, repeated), so a change in the machine's load hits every
variant alike and the ratios to vae_paper stay meaningful on a shared machine.

    .venv/bin/python benchmarks/paper_cost.py --rounds 3 --steps 100 --out benchmarks/results/fashion_paper/cost.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

import zoo
from zoo.data import batch_indices
from zoo.plugin_manager import default_registry
from zoo.recipes import train_config
from zoo.inputs import run_steps
from zoo.train import TrainState, assemble, make_optimizer, make_train_step

VARIANTS = ("vae_paper", "vampprior_paper", "mog_paper", "hvae_paper", "hvae_vampprior_paper")


def stepper(variant: str, registry, book):
    """A function running `n` training steps of the variant from its current state; returns steps per epoch too."""
    recipe = book.resolve(variant, registry)
    config = train_config(recipe)
    experiment = assemble(recipe, registry)
    graphdef, params = nnx.split(experiment.model)
    optimizer = make_optimizer(config)
    state = {"train": TrainState(params, optimizer.init(params)), "step": 0}
    step = make_train_step(graphdef, experiment.objective, experiment.condition, optimizer, config.seed,
                           experiment.dataset.dynamic_binarization)
    train = experiment.dataset.train
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)

    def run(n: int) -> float:
        indices = batch_indices(len(train.images), config.batch_size, config.seed, state["step"], n)
        began = time.perf_counter()
        state["train"], metrics = run_steps(step, state["train"], images, labels, indices, state["step"])
        np.asarray(metrics["loss"])
        state["step"] += n
        return time.perf_counter() - began

    return run, config.steps_per_epoch(len(train.images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps timed per variant per round")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    registry, book = default_registry(), zoo.RecipeBook([zoo.default_registry_path()])
    runners = {}
    for variant in VARIANTS:
        run, steps_per_epoch = stepper(variant, registry, book)
        run(5)  # compile
        runners[variant] = (run, steps_per_epoch)
    seconds = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant, (run, steps_per_epoch) in runners.items():
            seconds[variant].append(run(args.steps) / args.steps * steps_per_epoch)
    base = statistics.median(seconds["vae_paper"])
    lines = [f"Training seconds per epoch (median of {args.rounds} alternating rounds of {args.steps} steps, "
             "one process; ratios are what a shared machine's load leaves comparable)", "",
             "| variant | s / epoch | x vae_paper | rounds |", "|---|---|---|---|"]
    for variant in VARIANTS:
        median = statistics.median(seconds[variant])
        lines.append(f"| {variant} | {median:.2f} | {median / base:.2f}x | {', '.join(f'{s:.2f}' for s in seconds[variant])} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
