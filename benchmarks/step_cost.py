"""Seconds per training epoch of each variant beside a baseline variant, in one process.

The variants' jitted steps are timed in alternating rounds (the baseline, then
each other variant, repeated), so a change in the machine's load hits every
variant alike and the ratios to the baseline stay meaningful on a shared machine.
Beside each time: the step's FLOPs as XLA counts them in the compiled step, the
rate the time gives and its share of the jax matmul peak measured in the same
process, and the least multiple of the baseline's time the FLOPs allow: the
variant's step at the peak against the baseline's step as measured. A ratio
target below that floor cannot be met on this machine by a faster
implementation of the same arithmetic.

    .venv/bin/python benchmarks/step_cost.py --out benchmarks/results/fashion_paper/cost.md
    .venv/bin/python benchmarks/step_cost.py --suite families --out benchmarks/results/families/cost.md
    .venv/bin/python benchmarks/step_cost.py --suite families --variants vae_mlp factor_vae aae vae_gan
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import zoo
from zoo.evaluation.bench import expand, load_suite
from zoo.core.plugin_manager import default_registry
from zoo.core.recipes import train_config
from zoo.core.assembly import assemble
from zoo.training.step import initial_state
from zoo.training.loop import training_input

sys.path.insert(0, str(Path(__file__).resolve().parent / "perf"))
from breakdown import matmul_peak_gflops  # noqa: E402

PAPER_VARIANTS = ("vae_paper", "vampprior_paper", "mog_paper", "hvae_paper", "hvae_vampprior_paper")


def stepper(variant: str, registry, book, overrides: list[str]):
    """A function running `n` more training steps of the variant; returns steps per epoch and
    XLA's FLOP count of one step too."""
    recipe = book.resolve(variant, registry, overrides)
    config = train_config(recipe)
    experiment = assemble(recipe, registry)
    graphdef, optimizer, state = initial_state(experiment.model, config, experiment.objective)
    batches = training_input(
        experiment, config, graphdef, optimizer, "memory", 0, config.total_steps(len(experiment.dataset.train.images))
    )
    flops = step_flops(batches, state, config.batch_size)
    progress = {"state": state, "step": 0}

    def run(n: int) -> float:
        began = time.perf_counter()
        progress["state"], metrics = batches.run(progress["state"], progress["step"], progress["step"] + n)
        np.asarray(metrics["loss"])
        progress["step"] += n
        return time.perf_counter() - began

    return run, config.steps_per_epoch(len(experiment.dataset.train.images)), flops


def step_flops(batches, state, batch_size: int) -> float:
    """FLOPs of one step of an in-memory training input (`zoo.training.loop.training_input`): its
    one-step function on its device copy of the data, as XLA's cost analysis counts them."""
    indices = jnp.zeros((1, batch_size), jnp.int32)
    cost = batches.train_step.lower(state, batches.images, batches.labels, indices, 0, 0).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def suite_variants(name: str, book) -> tuple[list[str], list[str]]:
    """A suite's variants and the overrides its first seed's run of the first variant gets
    (dataset, task, batch size, `set:`), which every variant is timed under."""
    suite = load_suite(name, book)
    return list(suite.variants), expand(suite)[0].overrides(suite)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", help="time this suite's variants on its first dataset (default: fashion_paper's)")
    parser.add_argument("--variants", nargs="+", help="only these variants, the first the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps timed per variant per round")
    parser.add_argument(
        "--loop",
        choices=("auto", "step", "scan"),
        default="step",
        help="train.loop for every variant (default step: each variant's own step, not auto's noisy choice between loops)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    registry, book = default_registry(), zoo.RecipeBook([zoo.default_registry_path()])
    try:
        variants, overrides = suite_variants(args.suite, book) if args.suite else (list(PAPER_VARIANTS), [])
    except zoo.ZooError as exc:  # an unknown or broken suite: one line, exit 2
        parser.error(f"--suite: {exc}")
    overrides = [*overrides, f"train.loop={args.loop}"]
    variants = args.variants or variants
    baseline = variants[0]
    runners = {}
    for variant in variants:
        run, steps_per_epoch, flops = stepper(variant, registry, book, overrides)
        run(args.steps)  # compiles, and with train.loop auto picks the loop, before any round is timed
        runners[variant] = (run, steps_per_epoch, flops)
    peak = matmul_peak_gflops()
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant, (run, steps_per_epoch, _) in runners.items():
            seconds[variant].append(run(args.steps) / args.steps * steps_per_epoch)
    base = statistics.median(seconds[baseline])
    base_step = base / runners[baseline][1]
    lines = [
        f"Training seconds per epoch (median of {args.rounds} alternating rounds of {args.steps} steps, "
        f"one process, train.loop {args.loop}; ratios are what a shared machine's load leaves comparable). "
        f"GFLOP per step: XLA's count of the compiled step; jax matmul peak in this process: {peak:.0f} GFLOP/s "
        f"(2048^3, float32). Least x {baseline}: the variant's step at that peak against {baseline}'s step as timed.",
        "",
        f"| variant | s / epoch | x {baseline} | rounds | GFLOP / step | x {baseline} FLOPs | GFLOP/s "
        f"| % of peak | least x {baseline} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        median = statistics.median(seconds[variant])
        steps_per_epoch, flops = runners[variant][1:]
        rate = flops * steps_per_epoch / median / 1e9
        floor = flops / (peak * 1e9) / base_step
        lines.append(
            f"| {variant} | {median:.2f} | {median / base:.2f}x | {', '.join(f'{s:.2f}' for s in seconds[variant])} "
            f"| {flops / 1e9:.2f} | {flops / runners[baseline][2]:.2f}x | {rate:.0f} | {100 * rate / peak:.0f}% "
            f"| {floor:.2f}x |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
