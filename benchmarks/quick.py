"""The README's main job: a short comparison of a few variants on the embedded digits.

Every variant gets the same data, the same number of steps, the same batch size
and the same evaluation (test split, importance sampling with K samples). Prints
a Markdown table and writes a sample grid per variant.

    .venv/bin/python benchmarks/quick.py [--steps 1500] [--num-samples 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import jax

import zoo
from zoo.evaluate import evaluate
from zoo.images import save_grid
from zoo.recipes import RecipeBook
from zoo.sampling import sample_images
from zoo.train import load_trained, train_and_evaluate

VARIANTS = ("vae_mlp", "vae_conv", "cvae_mlp", "cvae_sohn")


def run_variant(variant: str, book: RecipeBook, registry: zoo.Registry, args) -> dict:
    """Train (or resume) one variant, evaluate it on the test split, write its samples."""
    recipe = book.resolve(variant, registry, [f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"])
    workdir = Path(args.out) / variant
    shutil.rmtree(workdir, ignore_errors=True)  # this script owns runs/quick: every run starts afresh
    began = time.perf_counter()
    train_and_evaluate(recipe, workdir, registry, progress=False)
    seconds = time.perf_counter() - began
    experiment, graphdef, params, step = load_trained(workdir, registry)
    metrics = evaluate(graphdef, params, experiment.condition, experiment.dataset.test, jax.random.key(0),
                       num_samples=args.num_samples, conditional=experiment.model.conditional)
    images, labels, rows = sample_images(experiment, graphdef, params, jax.random.key(1), per_row=10)
    save_grid(images, workdir / "samples.png", rows=rows, row_labels=labels, title=variant)
    return {"variant": variant, "step": step, "train_seconds": round(seconds, 1), **metrics}


def table(results: list[dict], num_samples: int) -> str:
    """The results as a Markdown table (nats; lower is better except active units)."""
    lines = [
        f"| variant | steps | -ELBO | NLL (IS, K={num_samples}) | KL | recon. error | active units | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        nll = -r.get("log_likelihood", r.get("conditional_log_likelihood", float("nan")))
        conditional = " (-log p(x given c))" if "conditional_log_likelihood" in r else ""
        lines.append(
            f"| {r['variant']} | {r['step']} | {-r['elbo']:.2f} | {nll:.2f}{conditional} | {r['kl']:.2f} | "
            f"{r['reconstruction_error']:.2f} | {r['active_units']} | {r['train_seconds']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--num-samples", type=int, default=1000, help="importance samples K per test image")
    parser.add_argument("--out", default="runs/quick")
    args = parser.parse_args(argv)
    registry = zoo.default_registry()
    book = RecipeBook([zoo.default_registry_path()])
    try:
        results = []
        for variant in args.variants:
            print(f"training {variant} for {args.steps} steps ...", flush=True)
            results.append(run_variant(variant, book, registry, args))
    except zoo.ZooError as exc:
        print(f"quick: error: {exc}", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    print()
    print(f"Digits (scikit-learn, 8x8, binarized), test split of {results[0]['num_examples']} images, one seed, nats per image:")
    print(table(results, args.num_samples))
    print(f"\nsample grids: {', '.join(str(Path(args.out) / r['variant'] / 'samples.png') for r in results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
