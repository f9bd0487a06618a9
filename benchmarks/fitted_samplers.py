"""The samples of a trained run under its own prior and under each sampler fitted after training
(issue 29 part 2): a grid of samples per sampler, its fit time, the mean log density of the test
split's codes under it against the standard normal's (a continuous latent) or the uniform and
independent categoricals' (a VQ-VAE's codes), and two numbers of the harness classifier per sampler.
Writes OUT/README.md, OUT/results.json and OUT/*.png.

    .venv/bin/python benchmarks/fitted_samplers.py CONTINUOUS_RUN VQ_RUN --out benchmarks/results/fitted_samplers

The runs of benchmarks/results/fitted_samplers/ were trained by TRAINING below. Each sampler is fitted afresh (its cache in RUN/samplers/ is removed first, so the fit time is the
fit's), then read back from the cache once (the time of a second `zoo sample --sampler`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

import zoo
from zoo.core.data import evaluation_split
from zoo.evaluation import classifier
from zoo.evaluation.plots import plot_images
from zoo.evaluation.samplers import SAMPLERS_DIR

# The runs of the committed report: the families suite's networks, data and budget (5 epochs).
FASHION = "--set 'dataset={name: fashion_mnist, pixels: dynamic_binarize}' --set train.epochs=5"
TRAINING = (
    f".venv/bin/zoo train vae_mlp --workdir runs/fitted_samplers/vae_mlp --quiet {FASHION}",
    f".venv/bin/zoo train vq_vae --workdir runs/fitted_samplers/vq_vae --quiet {FASHION}",
    ".venv/bin/python benchmarks/fitted_samplers.py runs/fitted_samplers/vae_mlp runs/fitted_samplers/vq_vae",
)
CONTINUOUS_SAMPLERS = ("gmm_fitted", "maf_fitted", "two_stage")
DISCRETE_SAMPLERS = ("pixelcnn_codes",)
GRID = 8  # an 8 x 8 grid of samples per sampler
CLASSIFIED = 1000  # samples per sampler for the classifier's numbers


def classifier_numbers(weights: dict[str, np.ndarray], images: np.ndarray, dataset) -> dict[str, float]:
    """The harness classifier's reading of images: its score exp(E_x KL(p(y | x) || p(y))) (the
    Inception score's form: high when each image is one clear class and the classes are spread),
    the classes' spread exp(H(p(y))) out of the dataset's 10, and the within-class spread of the
    images grouped by the class it sees, over the real training images' (sample_diversity)."""
    logits = np.asarray(classifier.logits(jax.tree.map(jnp.asarray, weights), jnp.asarray(images)), np.float64)
    log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    marginal = np.exp(log_p).mean(axis=0)
    kl = np.sum(np.exp(log_p) * (log_p - np.log(marginal)), axis=1)
    predicted = np.argmax(logits, axis=1)
    return {
        "classifier_score": float(np.exp(kl.mean())),
        "classes_spread": float(np.exp(-np.sum(marginal * np.log(marginal)))),
        "sample_diversity": classifier.sample_diversity(images, predicted, dataset),
    }


def fitted(run: zoo.Run, name: str) -> tuple[zoo.Run, float, float]:
    """(the run with sampler `name` fitted afresh, seconds to fit it, seconds to read it back)."""
    for cached in (run.workdir / SAMPLERS_DIR).glob(f"{name}-step*.npz"):
        cached.unlink()
    start = time.perf_counter()
    run.with_sampler(name)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with_sampler = run.with_sampler(name)
    return with_sampler, fit_seconds, time.perf_counter() - start


def code_log_densities(run: zoo.Run, test: np.ndarray) -> dict[str, Any]:
    """The test codes, and the log density of each under references that need no fit."""
    model = run.model
    if model.latent_kind == "discrete":
        codes = np.asarray(model.encode(jnp.asarray(test)).codes)
        num_codes = int(model.encoder.codebook.shape[0])
        return {"codes": codes, "uniform": np.full(len(codes), -codes.shape[1] * np.log(num_codes))}
    codes = run.encode(test)
    return {"codes": codes, "standard_normal": scipy.stats.multivariate_normal(np.zeros(codes.shape[1])).logpdf(codes)}


def log_density(run: zoo.Run, codes: np.ndarray) -> np.ndarray:
    """Each test code's log density under the run's prior (as it stands: its own or a sampler)."""
    prior = run.model.prior_distribution(None, len(codes))
    if run.model.latent_kind == "discrete":
        return np.asarray(prior.code_log_prob(jnp.asarray(codes)), np.float64)
    return np.asarray(prior.log_prob(jnp.asarray(codes)), np.float64)


def measure(run: zoo.Run, name: str, codes: np.ndarray, weights, out: Path, seed: int) -> dict[str, Any]:
    """One row: the run under sampler `name` (None: its own prior)."""
    row: dict[str, Any] = {"run": run.variant, "sampler": name or f"own prior ({run.recipe['prior']['name']})"}
    if name is not None:
        run, row["fit_seconds"], row["cached_seconds"] = fitted(run, name)
    row["test_code_log_density"] = float(log_density(run, codes).mean())
    grid = run.sample(GRID * GRID, seed=seed)
    label = name or "own_prior"
    path = plot_images(grid, GRID, out / f"{run.variant}_{label}.png", f"{run.variant}: {row['sampler']}")
    row["grid"] = path.name
    row.update(classifier_numbers(weights, run.sample(CLASSIFIED, seed=seed + 1), run.experiment.dataset))
    return row


def grayscale_test_images(run: zoo.Run) -> np.ndarray:
    """The run's test images in grayscale, whatever binarization its dataset applies to them."""
    from zoo.core.data import build_dataset
    from zoo.core.plugin_manager import default_registry

    recipe = run.recipe
    spec = {**recipe["dataset"], "pixels": "grayscale"} if "pixels" in recipe["dataset"] else recipe["dataset"]
    return build_dataset({**recipe, "dataset": spec}, default_registry()).test.images


def runs_rows(run_dirs: list[Path], out: Path, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, references = [], {}
    for run_dir in run_dirs:
        run = zoo.load(run_dir)
        dataset = run.experiment.dataset
        weights = classifier.cached(dataset, run_dir / "classifiers" / f"{dataset.name}.npz")
        test = evaluation_split(dataset, "test").images
        reference = code_log_densities(run, test)
        codes = reference.pop("codes")
        references[run.variant] = {key: float(value.mean()) for key, value in reference.items()}
        real = grayscale_test_images(run)[:CLASSIFIED]  # as the samples: likelihood means, not binarized
        references[run.variant]["real_test_images"] = classifier_numbers(weights, real, dataset)
        samplers = DISCRETE_SAMPLERS if run.model.latent_kind == "discrete" else CONTINUOUS_SAMPLERS
        for name in (None, *samplers):
            rows.append(measure(run, name, codes, weights, out, seed))
            print(json.dumps(rows[-1]), flush=True)
    return rows, references


def table(rows: list[dict[str, Any]], references: dict[str, Any]) -> list[str]:
    """The rows of each run, then a row of its references."""
    lines = [
        "| run | sampler | fit (s) | read back (s) | test codes' log density (nats) | classifier score | classes spread "
        "| sample diversity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, reference in references.items():
        for row in (row for row in rows if row["run"] == variant):
            seconds = [f"{row[key]:.1f}" if key in row else "-" for key in ("fit_seconds", "cached_seconds")]
            lines.append(
                f"| {variant} | {row['sampler']} | {seconds[0]} | {seconds[1]} | {row['test_code_log_density']:.2f} | "
                f"{row['classifier_score']:.2f} | {row['classes_spread']:.2f} | {row['sample_diversity']:.2f} |"
            )
        real = reference["real_test_images"]
        densities = "; ".join(
            f"{key.replace('_', ' ')}: {value:.2f}" for key, value in reference.items() if key != "real_test_images"
        )
        lines.append(
            f"| {variant} | reference: real test images (classifier), {densities} (log density) | | | | "
            f"{real['classifier_score']:.2f} | {real['classes_spread']:.2f} | {real['sample_diversity']:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained runs: one of a continuous latent, one VQ-VAE")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fitted_samplers"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load_before, started = os.getloadavg(), time.perf_counter()
    rows, references = runs_rows(args.runs, args.out, args.seed)
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "jax_devices": [str(d) for d in jax.devices()],
        "load_average_at_start": load_before,
        "load_average_at_end": os.getloadavg(),
        "wall_seconds": time.perf_counter() - started,
    }
    results = {"rows": rows, "references": references, "machine": machine}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "README.md").write_text(readme(rows, references, machine, args.runs), encoding="utf-8")
    print("\n".join(table(rows, references)))


def readme(rows: list[dict[str, Any]], references: dict[str, Any], machine: dict[str, Any], run_dirs) -> str:
    """The report: how it was made, the table, what its columns are, the grids."""
    runs = [zoo.load(run_dir) for run_dir in run_dirs]
    trained = ", ".join(f"{run.variant} at step {run.step} ({run.checkpoint_used} checkpoint)" for run in runs)
    load = (
        f"{machine['load_average_at_start'][0]:.1f} at the start and {machine['load_average_at_end'][0]:.1f} at the end"
    )
    lines = [
        "# Samplers fitted after training (issue 29 part 2)",
        "",
        "One Gaussian VAE (`vae_mlp`) and one VQ-VAE (`vq_vae`), each trained 5 epochs on dynamically",
        "binarized Fashion-MNIST (the families suite's networks and budget), sampled under their own prior",
        "and under each sampler fitted after training to their training split's codes",
        "(`zoo sample RUN --sampler NAME`, defaults of every sampler). Written by",
        "`benchmarks/fitted_samplers.py`; the numbers are in `results.json`.",
        "",
        "```sh",
        *TRAINING,
        "```",
        "",
        f"Runs: {trained}. Machine: {machine['cpus']} CPU cores, no accelerator ({', '.join(machine['jax_devices'])}),",
        f"shared with other jobs (load average {load}; {machine['wall_seconds'] / 60:.1f} minutes of measuring):",
        "the times are those of a loaded machine, comparable with each other more than with another machine's.",
        "",
        *table(rows, references),
        "",
        "- fit: seconds to fit the sampler afresh, the encoding of the 55,000 training images included;",
        "  read back: seconds of the next call, which reads the fit from `RUN/samplers/`.",
        "- test codes' log density: the mean over the 10,000 test images of log p(code) under the sampler, in",
        "  nats: of the posterior mean (16 units) for `vae_mlp`, against the standard normal's in the reference",
        "  row; of the 4 code indices for `vq_vae`, against the uniform categorical's (4 log 64) and the run's own",
        "  prior's (`fitted_codebook`, a categorical per position at the training codes' frequencies). Higher is a",
        "  closer fit; `two_stage`'s is importance-sampled (64 draws), a lower bound on average.",
        f"- classifier numbers, from {CLASSIFIED} samples of each (and the first {CLASSIFIED} real test images, in",
        "  grayscale as the samples are, in the reference row), read by the harness classifier (a 784-256-10 MLP",
        "  trained on the training split,",
        "  zoo.evaluation.classifier): its score exp(E KL(p(y | x) || p(y))) (the Inception score's form: high when",
        "  each sample is one clear class and the classes are spread; at most 10), the spread of the classes it sees",
        "  exp(H(p(y))) (10 for every class equally often), and the samples' within-class pixel spread, grouped by",
        "  the class it sees, over the real training images' (`sample_diversity`; 1: as varied as the data).",
        "",
        "## Samples (8 x 8 each, seed 0)",
        "",
    ]
    for row in rows:
        lines += [f"### {row['run']}: {row['sampler']}", "", f"![{row['run']} {row['sampler']}]({row['grid']})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
