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

import numpy as np

import zoo
from zoo.plugin_manager import default_registry
from zoo.recipes import train_config
from zoo.experiment import assemble
from zoo.training import initial_state, training_input

VARIANTS = ("vae_paper", "vampprior_paper", "mog_paper", "hvae_paper", "hvae_vampprior_paper")


def stepper(variant: str, registry, book):
    """A function running `n` more training steps of the variant; returns steps per epoch too."""
    recipe = book.resolve(variant, registry)
    config = train_config(recipe)
    experiment = assemble(recipe, registry)
    graphdef, optimizer, state = initial_state(experiment.model, config)
    batches = training_input(experiment, config, graphdef, optimizer, "memory", 0, config.total_steps(len(experiment.dataset.train.images)))
    progress = {"state": state, "step": 0}

    def run(n: int) -> float:
        began = time.perf_counter()
        progress["state"], metrics = batches.run(progress["state"], progress["step"], progress["step"] + n)
        np.asarray(metrics["loss"])
        progress["step"] += n
        return time.perf_counter() - began

    return run, config.steps_per_epoch(len(experiment.dataset.train.images))


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
