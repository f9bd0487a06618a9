"""A training epoch of the MLP VAE on Fashion-MNIST, streamed (grain) against in memory.

Both paths run the same jitted step on the same batches; the epochs are timed
in alternating rounds (memory, stream, memory, ...) in one process, so a
change in the machine's load hits both alike.

    .venv/bin/python benchmarks/streaming.py --rounds 3 --out benchmarks/results/streaming.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import zoo
from zoo.core.plugin_manager import default_registry
from zoo.core.recipes import train_config
from zoo.core.assembly import assemble
from zoo.training.step import initial_state
from zoo.training.loop import training_input

OVERRIDES = ["dataset={name: fashion_mnist, pixels: dynamic_binarize}"]


def epoch_runner(kind: str, registry, book, rounds: int, variant: str = "vae_mlp", overrides=OVERRIDES):
    """A function that trains one more epoch through the `kind` input path and returns its seconds."""
    recipe = book.resolve(variant, registry, overrides)
    config = train_config(recipe)
    experiment = assemble(recipe, registry)
    graphdef, optimizer, state = initial_state(experiment.model, config)
    per_epoch = config.steps_per_epoch(len(experiment.dataset.train.images))
    batches = training_input(experiment, config, graphdef, optimizer, kind, 0, per_epoch * (rounds + 1))
    progress = {"state": state, "step": 0}

    def run_epoch(steps: int = per_epoch) -> float:
        began = time.perf_counter()
        progress["state"], metrics = batches.run(progress["state"], progress["step"], progress["step"] + steps)
        np.asarray(metrics["loss"])
        progress["step"] += steps
        return time.perf_counter() - began

    return run_epoch, per_epoch, len(experiment.dataset.train.images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    registry, book = default_registry(), zoo.RecipeBook([zoo.default_registry_path()])
    runners = {kind: epoch_runner(kind, registry, book, args.rounds) for kind in ("memory", "stream")}
    for run_epoch, *_ in runners.values():
        run_epoch(5)  # compile
    seconds: dict[str, list[float]] = {kind: [] for kind in runners}
    for _ in range(args.rounds):
        for kind, (run_epoch, *_) in runners.items():
            seconds[kind].append(run_epoch())
    memory, stream = statistics.median(seconds["memory"]), statistics.median(seconds["stream"])
    _, per_epoch, examples = runners["memory"]
    lines = [
        f"vae_mlp on Fashion-MNIST ({examples} training images, {per_epoch} steps of batch 128 an epoch, "
        f"dynamic binarization), median of {args.rounds} alternating epochs",
        "",
        "| input | s / epoch | images / s | epochs |",
        "|---|---|---|---|",
    ]
    for kind, median in (("in memory", memory), ("streamed (grain)", stream)):
        values = seconds["memory" if kind == "in memory" else "stream"]
        lines.append(
            f"| {kind} | {median:.2f} | {per_epoch * 128 / median:,.0f} | {', '.join(f'{v:.2f}' for v in values)} |"
        )
    lines += ["", f"streamed / in memory: {stream / memory:.3f} (target: within 1.10)"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
