"""The perf benchmark: the zoo against a plain PyTorch reference, in one run.

    .venv/bin/python benchmarks/perf/run.py [--quick] [--out benchmarks/results/perf]

Measures the training throughput of four architectures (recipes.yaml) through
the zoo's training path and through torch_reference.py (eager, and
torch.compile), then the importance-sampled log-likelihood of the seed VAE in
both, and the machine's float32 matmul peak (numpy and jax, 2048^3) before
each repeat and at the end (the best is the peak). Each
measurement runs in a process of its own (measure.py), so its peak memory is
its own; zoo and torch measurements alternate, so drift on a shared machine
touches both; figures are medians over repeats. Writes report.md and
results.json to --out. Needs the perf extra: pip install -e '.[perf]'.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

import zoo

PERF = Path(__file__).resolve().parent
sys.path.insert(0, str(PERF))
import flop_count  # noqa: E402
import perf_report  # noqa: E402

VARIANTS = ("perf_vae_mlp", "perf_cvae_mlp", "perf_vae_burda", "perf_vae_conv")
IS_VARIANT = "perf_vae_mlp"
FULL = {
    "warmup": 20,
    "steps": 200,
    "windows": 3,
    "repeats": 3,
    "is_images": 500,
    "is_samples": 5000,
    "is_small_samples": 1000,
}
QUICK = {
    "warmup": 2,
    "steps": 5,
    "windows": 1,
    "repeats": 1,
    "is_images": 100,
    "is_samples": 500,
    "is_small_samples": 100,
}
X_SHAPE = (28, 28, 1)


def parse_args(argv):
    """(arguments, settings): the step counts and sizes of a full or --quick run, with overrides."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps and small N: a smoke test, not figures")
    parser.add_argument("--out", default="benchmarks/results/perf", help="folder for report.md and results.json")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=VARIANTS,
        metavar="VARIANT",
        help=f"architectures to train (default all: {' '.join(VARIANTS)})",
    )
    parser.add_argument("--repeats", type=int, help="repeats of every measurement (default 3, quick 1)")
    parser.add_argument(
        "--is-chunk", type=int, default=25, help="importance samples per chunk, both sides (default 25)"
    )
    parser.add_argument("--is-images", type=int, help="test images for the IS evaluation (default 500, quick 100)")
    parser.add_argument(
        "--torch-compile", choices=("on", "off"), help="also time torch.compile (default on; quick off)"
    )
    parser.add_argument("--skip-is", action="store_true", help="leave out the IS evaluation")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed to one measurement process")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    settings = dict(QUICK if args.quick else FULL)
    settings["repeats"] = args.repeats or settings["repeats"]
    settings["is_images"] = args.is_images or settings["is_images"]
    settings["is_chunk"] = args.is_chunk
    settings["torch_compile"] = (args.torch_compile or ("off" if args.quick else "on")) == "on"
    if (
        settings["repeats"] < 1
        or settings["is_images"] < 100
        or settings["is_images"] % 100
        or settings["is_chunk"] < 1
    ):
        parser.error(
            "--repeats must be at least 1 and --is-images a positive multiple of 100 (the IS batch), --is-chunk at least 1"
        )
    return args, settings


def measure(spec: dict, timeout: int) -> dict:
    """Run one measurement in a fresh process; its figures, or {'error': one line}."""
    command = [sys.executable, str(PERF / "measure.py"), json.dumps(spec)]
    # torch.compile's first step is timed from scratch, not from inductor's cache of an earlier run.
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"} if spec.get("compile") else None
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"took longer than {timeout} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit status {done.returncode}: {last}"}
    result = json.loads(lines[-1])
    result["process_s"] = time.perf_counter() - began
    print(f"  {spec['task']:<12} {spec.get('variant', ''):<15} {summary_line(result)}", flush=True)
    return result


def summary_line(result: dict) -> str:
    """A short progress line for one measurement."""
    rate = result.get("images_per_s")
    text = (
        f"{statistics.median(rate):,.0f} images/s"
        if rate
        else ", ".join(f"{k} {v:.1f}" for k, v in result.items() if k.endswith("gflops"))
    )
    return f"{text}, peak RSS {result['peak_rss_mib']:.0f} MiB, {result['process_s']:.0f} s"


def export_data(recipe: dict, registry, folder: Path) -> None:
    """Write the zoo's train and test images and labels as .npy, for the torch processes."""
    from zoo.core.data import build_dataset

    dataset = build_dataset(recipe, registry)
    for name in ("train", "test"):
        split = dataset.split(name)
        np.save(folder / f"{name}_images.npy", np.asarray(split.images, np.float32))
        np.save(folder / f"{name}_labels.npy", np.asarray(split.labels))


def training_runs(recipes: dict, settings: dict, data: Path, timeout: int, peaks: list) -> dict:
    """Every training measurement: the matmul peak, then zoo and torch eager alternating, per repeat;
    torch.compile once at the end."""
    runs = {variant: {"zoo": [], "torch_eager": [], "torch_compile": []} for variant in recipes}
    steps = {k: settings[k] for k in ("warmup", "steps", "windows")}
    for repeat in range(settings["repeats"]):
        peaks.append(measure({"task": "matmul_peak"}, timeout))
        for variant, recipe in recipes.items():
            zoo = {"task": "zoo_train", "variant": variant, **steps}
            eager = {
                "task": "torch_train",
                "variant": variant,
                "recipe": json.dumps(recipe),
                "data": str(data),
                **steps,
            }
            order = [("zoo", zoo), ("torch_eager", eager)]
            for side, spec in order if repeat % 2 == 0 else order[::-1]:
                runs[variant][side].append(measure(spec, timeout))
    for variant, recipe in recipes.items() if settings["torch_compile"] else ():
        spec = {
            "task": "torch_train",
            "variant": variant,
            "recipe": json.dumps(recipe),
            "data": str(data),
            "compile": True,
            **steps,
        }
        runs[variant]["torch_compile"].append(measure(spec, timeout))
    return runs


def is_runs(recipe: dict, settings: dict, data: Path, timeout: int) -> dict:
    """IS evaluation at K: zoo and torch alternating per repeat; the zoo once more at the small K."""
    # 25 samples x 100 images = 2500 decoder rows per chunk on both sides: the zoo's
    # default (zoo.core.model.ROWS_PER_CHUNK), and faster for the torch reference too.
    common = {
        "variant": IS_VARIANT,
        "images": settings["is_images"],
        "chunk_size": settings["is_chunk"],
        "batch_size": 100,
    }
    torch_spec = {"task": "torch_is", "recipe": json.dumps(recipe), "data": str(data), **common}
    runs = {"zoo": [], "torch": [], "zoo_small_k": []}
    for repeat in range(settings["repeats"]):
        order = [("zoo", {"task": "zoo_is", **common}), ("torch", torch_spec)]
        for side, spec in order if repeat % 2 == 0 else order[::-1]:
            runs[side].append(measure({**spec, "num_samples": settings["is_samples"]}, timeout))
    runs["zoo_small_k"].append(
        measure({"task": "zoo_is", **common, "num_samples": settings["is_small_samples"]}, timeout)
    )
    return runs


def environment(command: str) -> dict:
    """The command, date, CPU, cores and package versions of this run."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    versions = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "optax", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": " avx512f" in flags,
        "versions": versions,
        "load_average_at_start": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    """Run the benchmark and write its report."""
    args, settings = parse_args(sys.argv[1:] if argv is None else argv)
    if importlib.util.find_spec("torch") is None:
        print("run.py: error: torch is not installed; pip install -c constraints.txt -e '.[perf]'", file=sys.stderr)
        return 2
    try:
        return benchmark(args, settings)
    except zoo.ZooError as exc:  # a missing dataset or a bad recipe: one line, not a traceback
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2


def benchmark(args, settings) -> int:
    """Every measurement in turn; then the report, printed and written."""
    registry = zoo.default_registry()
    book = zoo.RecipeBook([zoo.default_registry_path(), PERF / "recipes.yaml"])
    recipes = {variant: book.resolve(variant, registry) for variant in args.variants}
    command = " ".join([".venv/bin/python", "benchmarks/perf/run.py", *args.argv])
    results = {"environment": environment(command), "settings": settings}
    flops = {v: flop_count.training_flops(r, X_SHAPE) for v, r in recipes.items()}
    seed = book.resolve(IS_VARIANT, registry)
    with tempfile.TemporaryDirectory(prefix="vae-zoo-perf-") as folder:
        export_data(seed, registry, Path(folder))
        print("training (and the matmul peak before each repeat)", flush=True)
        results["matmul_peaks"] = []
        results["training"] = training_runs(recipes, settings, Path(folder), args.timeout, results["matmul_peaks"])
        if not args.skip_is:
            print("importance-sampled evaluation", flush=True)
            results["importance_sampling"] = is_runs(seed, settings, Path(folder), args.timeout)
        results["matmul_peaks"].append(measure({"task": "matmul_peak"}, args.timeout))
    results["training_flops_per_image"] = flops
    results["is_flops_per_image"] = {
        k: flop_count.importance_sampling_flops(seed, X_SHAPE, settings[k]) for k in ("is_samples", "is_small_samples")
    }
    results["batch_size"] = {v: r["train"]["batch_size"] for v, r in recipes.items()}
    results["environment"]["load_average_at_end"] = os.getloadavg()[0]
    text = perf_report.markdown(results)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out / 'report.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
