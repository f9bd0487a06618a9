"""The perf benchmark: the zoo against a plain PyTorch reference, in one run.

    .venv/bin/python benchmarks/perf/run.py [--check] [--quick] [--out benchmarks/results/perf]

Measures the training throughput of the architectures of recipes.yaml
through the zoo's training path and through torch_reference.py (PyTorch
eager), and the importance-sampled log-likelihood of the seed VAE in both,
with the machine's float32 matmul rate (numpy, jax and torch, 2048^3) before
the first and after the last measurement.

How it measures (measure.py): each side of each architecture is one process
that builds, compiles and warms up before any timing, then times windows of
about --window-s seconds on request. The zoo's and torch's processes of one
architecture live side by side and their windows alternate (zoo first in
even repeats, torch first in odd ones), --repeats times, so the load on a
shared machine touches both; a ratio is zoo / torch within one repeat, and
the report gives each ratio's min, median and max over the repeats. Both
sides run with the same threads (--threads, default every CPU this process
may use): CPU affinity, which sizes XLA's Eigen pool, and
torch.set_num_threads; the report records what took effect.

--check exits with status 1, naming each median ratio below its target
(every training architecture 2x PyTorch eager, the colour conv 1.5x, IS
1.5x), and with status 3 without judging when other work loaded the machine
while each side ran several threads; --from-results re-reports (and checks) a results.json without
measuring. Writes report.md and results.json to --out. Needs the perf extra:
pip install -e '.[perf]'.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import select
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

VARIANTS = (
    "perf_vae_mlp",
    "perf_cvae_mlp",
    "perf_vae_burda",
    "perf_vae_conv",
    "perf_vae_conv_transpose",
    "perf_vae_conv_color",
)
IS_VARIANT = "perf_vae_mlp"
SCAN_BLOCK = 10  # zoo.training.inputs.SCAN_BLOCK: windows are whole scanned blocks
COLOR_SHAPE = (32, 32, 3)  # perf_vae_conv_color's images (issue 26): synthetic, speed does not depend on content
COLOR_IMAGES = {"train": 10000, "test": 1000}
FULL = {
    "repeats": 7,
    "window_s": 2.0,
    "warmup_steps": 20,
    "warmup_s": 1.0,
    "is_images": 100,
    "is_samples": 5000,
    "is_small_samples": 1000,
    "is_chunk": 25,
}
QUICK = {**FULL, "repeats": 2, "window_s": 0.3, "warmup_steps": 10, "warmup_s": 0.0, "is_samples": 200}
QUICK["is_small_samples"] = 100


def parse_args(argv):
    """(arguments, settings): the settings of a full or --quick run, with overrides."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 short repeats, small K: a smoke test, not figures")
    parser.add_argument("--out", default="benchmarks/results/perf", help="folder for report.md and results.json")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=VARIANTS,
        metavar="VARIANT",
        help=f"architectures to train (default all: {' '.join(VARIANTS)})",
    )
    parser.add_argument("--repeats", type=int, help="alternating repeats of every ratio (default 7, quick 2)")
    parser.add_argument("--window-s", type=float, help="seconds of one timed training window (default 2)")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="intra-op threads (and CPUs) of both sides (default: every CPU this process may use, "
        f"{len(os.sched_getaffinity(0))} here)",
    )
    parser.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the zoo's processes")
    parser.add_argument("--is-images", type=int, help="test images per timed IS window (default 100)")
    parser.add_argument(
        "--is-chunk", type=int, help="importance samples per chunk, both sides (default 25: 2500 decoder rows)"
    )
    parser.add_argument("--torch-compile", choices=("on", "off"), default="off", help="also time torch.compile")
    parser.add_argument("--skip-is", action="store_true", help="leave out the IS evaluation")
    parser.add_argument("--check", action="store_true", help="exit 1 when a median ratio is below its target")
    parser.add_argument("--from-results", metavar="JSON", help="re-report (and --check) a results.json, no measuring")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed to one worker's set-up or window")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key in ("repeats", "window_s", "is_images", "is_chunk"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["threads"], settings["xla_flags"] = args.threads, args.xla_flags
    settings["torch_compile"] = args.torch_compile == "on"
    if (
        settings["repeats"] < 1
        or settings["window_s"] <= 0
        or settings["is_images"] < 100
        or settings["is_images"] % 100
        or settings["is_chunk"] < 1
        or settings["threads"] < 1
    ):
        parser.error(
            "--repeats, --threads and --is-chunk must be at least 1, --window-s positive and --is-images "
            "a positive multiple of 100 (the IS batch)"
        )
    return args, settings


class WorkerError(RuntimeError):
    """A worker process failed or took too long: one line saying how."""


class Worker:
    """One measure.py worker process: its set-up figures, then windows on request."""

    def __init__(self, spec: dict, timeout: int, label: str):
        self.spec, self.timeout, self.label = spec, timeout, label
        self.stderr = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ)
        if spec.get("compile"):  # torch.compile's first step is timed from scratch, not from a cache
            env["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
        self.began = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, str(PERF / "measure.py"), json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
        )
        self.ready = self._answer()
        self.windows: list[dict] = []

    def _answer(self) -> dict:
        stdout = self.process.stdout
        assert stdout is not None
        readable, _, _ = select.select([stdout], [], [], self.timeout)
        line = stdout.readline() if readable else ""
        if not line:
            if readable:
                self.process.wait(timeout=10)
            else:
                self.process.kill()
            self.stderr.seek(0)
            last = (self.stderr.read().strip().splitlines() or ["no output"])[-1]
            status = self.process.poll()
            why = f"took longer than {self.timeout} s" if not readable else f"exit status {status}: {last}"
            raise WorkerError(why)
        return json.loads(line)

    def window(self, request: dict) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        figures = self._answer()
        self.windows.append(figures)
        return figures

    def finish(self) -> dict:
        """Stop the process; everything it measured, its peak memory and thread settings."""
        assert self.process.stdin is not None
        self.process.stdin.write('"done"\n')
        self.process.stdin.flush()
        final = self._answer()
        self.process.wait(timeout=60)
        self.stderr.close()
        return {
            **self.ready,
            "windows": self.windows,
            "images_per_s": [w["images_per_s"] for w in self.windows],
            **final,
            "process_s": time.perf_counter() - self.began,
        }

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def one_shot(spec: dict, timeout: int) -> dict:
    """A measurement that prints one line and exits (the matmul peak); its figures, or {'error': ...}."""
    command = [sys.executable, str(PERF / "measure.py"), json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"took longer than {timeout} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"exit status {done.returncode}: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"}
    result = json.loads(lines[-1])
    print(
        "  matmul peak (GFLOP/s): "
        + ", ".join(f"{k.split('_')[0]} {result[k]:.0f}" for k in ("numpy_gflops", "jax_gflops", "torch_gflops")),
        flush=True,
    )
    return result


def alternate(zoo_spec: dict, torch_spec: dict, request, repeats: int, timeout: int, name: str) -> dict:
    """Start both workers (each warms up alone), then `repeats` rounds of one window each, the zoo first
    in even rounds; {'zoo': ..., 'torch': ..., 'ratios': [...]} or {'error': ...}."""
    workers: dict[str, Worker] = {}
    try:
        workers["zoo"] = Worker(zoo_spec, timeout, "zoo")
        workers["torch"] = Worker(torch_spec, timeout, "torch")
        window = request(workers["zoo"].ready, workers["torch"].ready)
        ratios = []
        for repeat in range(repeats):
            order = ("zoo", "torch") if repeat % 2 == 0 else ("torch", "zoo")
            rates = {side: workers[side].window(window)["images_per_s"] for side in order}
            ratios.append(rates["zoo"] / rates["torch"])
            print(
                f"  {name:<20} repeat {repeat + 1}: zoo {rates['zoo']:,.1f}, torch {rates['torch']:,.1f} images/s, "
                f"{ratios[-1]:.2f}x",
                flush=True,
            )
        result = {side: worker.finish() for side, worker in workers.items()}
        return {**result, "window": window, "ratios": ratios}
    except WorkerError as exc:
        print(f"  {name}: failed: {exc}", flush=True)
        return {"error": str(exc)}
    finally:
        for worker in workers.values():
            worker.kill()


def solo(spec: dict, request: dict, repeats: int, timeout: int, name: str) -> dict:
    """One worker alone (torch.compile, the IS memory check): its windows, or {'error': ...}."""
    worker = None
    try:
        worker = Worker(spec, timeout, name)
        for _ in range(repeats):
            worker.window(request)
        result = worker.finish()
        print(f"  {name:<20} {np.median(result['images_per_s']):,.1f} images/s", flush=True)
        return result
    except WorkerError as exc:
        print(f"  {name}: failed: {exc}", flush=True)
        return {"error": str(exc)}
    finally:
        if worker is not None:
            worker.kill()


def window_steps(settings: dict, batch_size: int):
    """The training window: whole scanned blocks lasting about window_s at the slower side's warm-up rate."""

    def request(zoo_ready: dict, torch_ready: dict) -> dict:
        rate = min(zoo_ready["warmup_images_per_s"], torch_ready["warmup_images_per_s"])
        blocks = max(1, round(settings["window_s"] * rate / batch_size / SCAN_BLOCK))
        return {"steps": blocks * SCAN_BLOCK}

    return request


def training_runs(recipes: dict, settings: dict, data: dict, timeout: int) -> dict:
    """Per architecture, the zoo and torch eager alternating (torch.compile after, alone, if asked)."""
    common = {k: settings[k] for k in ("warmup_steps", "warmup_s", "threads")}
    runs = {}
    for variant, recipe in recipes.items():
        overrides = data[variant]["overrides"]
        zoo_spec = {"task": "zoo_train", "variant": variant, "overrides": overrides, **common}
        zoo_spec["xla_flags"] = settings["xla_flags"]
        torch_spec = {"task": "torch_train", "recipe": json.dumps(recipe), "data": data[variant]["folder"], **common}
        request = window_steps(settings, recipe["train"]["batch_size"])
        runs[variant] = alternate(zoo_spec, torch_spec, request, settings["repeats"], timeout, variant)
        if settings["torch_compile"] and "error" not in runs[variant]:
            runs[variant]["torch_compile"] = solo(
                {**torch_spec, "compile": True}, runs[variant]["window"], settings["repeats"], timeout, "torch.compile"
            )
    return runs


def is_runs(recipe: dict, settings: dict, data: str, timeout: int) -> dict:
    """IS at K: the zoo and torch alternating; then the zoo alone at the small K, for its memory."""
    common = {
        "variant": IS_VARIANT,
        "images": settings["is_images"],
        "chunk_size": settings["is_chunk"],
        "batch_size": 100,
        "threads": settings["threads"],
        "num_samples": settings["is_samples"],
    }
    zoo_spec = {"task": "zoo_is", "xla_flags": settings["xla_flags"], **common}
    torch_spec = {"task": "torch_is", "recipe": json.dumps(recipe), "data": data, **common}
    request = {"images": settings["is_images"]}
    runs = alternate(zoo_spec, torch_spec, lambda *_: request, settings["repeats"], timeout, "importance sampling")
    small = {**zoo_spec, "num_samples": settings["is_small_samples"]}
    runs["zoo_small_k"] = solo(small, request, 1, timeout, f"zoo IS at K={settings['is_small_samples']}")
    return runs


def export_data(recipe: dict, registry, folder: Path) -> None:
    """Write the zoo's train and test images and labels as .npy, for the torch processes."""
    from zoo.core.data import build_dataset

    dataset = build_dataset(recipe, registry)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        split = dataset.split(name)
        np.save(folder / f"{name}_images.npy", np.asarray(split.images, np.float32))
        np.save(folder / f"{name}_labels.npy", np.asarray(split.labels))


def color_arrays(folder: Path) -> Path:
    """Synthetic 32x32x3 images (uint8 noise, 10 labels) as an .npz for the `arrays` dataset."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in COLOR_IMAGES.items():
        arrays[split] = rng.integers(0, 256, (count, *COLOR_SHAPE), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 10, count)
    path = folder / "color.npz"
    np.savez(path, **arrays)
    return path


def cpu_description() -> dict:
    """What /proc/cpuinfo says of the CPU: model, family, model number, stepping, MHz, the vector extensions.

    "AMD EPYC" alone names several generations, whose AVX-512 differs (Zen 4 splits a 512-bit
    instruction into two 256-bit halves, Zen 5 does not): family and model tell them apart."""
    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    return {
        "cpu": fields.get("model name", platform.processor()),
        "vendor": fields.get("vendor_id"),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "stepping": fields.get("stepping"),
        "mhz": fields.get("cpu MHz"),
        "cache": fields.get("cache size"),
        "vector_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
        "avx512": "avx512f" in flags,
        "hypervisor": "hypervisor" in flags,
    }


def environment(command: str) -> dict:
    """The command, date, CPU, cores, kernel and package versions of this run."""
    versions = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "optax", "distrax", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **cpu_description(),
        "cores": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "versions": versions,
        "xla_flags_environment": os.environ.get("XLA_FLAGS", ""),
        "load_average_at_start": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    """Run the benchmark (or re-report a results.json), write its report, and check it if asked."""
    args, settings = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_results:
        results = json.loads(Path(args.from_results).read_text())
        print(perf_report.markdown(results))
        return check(results) if args.check else 0
    if importlib.util.find_spec("torch") is None:
        print("run.py: error: torch is not installed; pip install -c constraints.txt -e '.[perf]'", file=sys.stderr)
        return 2
    try:
        results = benchmark(args, settings)
    except zoo.ZooError as exc:  # a missing dataset or a bad recipe: one line, not a traceback
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    return check(results) if args.check else 0


def check(results: dict) -> int:
    """1, naming each median ratio below its target (or not measured); 0 when all are met; 3 (not judged)
    when other work loaded the machine and the sides ran more than one thread each, whose ratios then
    measure PyTorch's threads waiting on each other, not the zoo (benchmarks/perf/README.md)."""
    if perf_report.loaded(results) and results["settings"]["threads"] > 1:
        print(
            "check: not judged: the machine was loaded (load average above the cores) and each side ran "
            f"{results['settings']['threads']} threads; rerun on an idle machine (or with --threads 1)",
            file=sys.stderr,
        )
        return 3
    if perf_report.loaded(results):
        print("check: warning: the machine was loaded; see the report's first paragraphs", file=sys.stderr)
    missed = [row for row in perf_report.target_rows(results) if not row["met"]]
    for row in missed:
        figure = "not measured" if row["median"] is None else f"median {row['median']:.2f}x"
        print(f"check: {row['name']} {figure}, below its target {row['target']:.1f}x", file=sys.stderr)
    if not missed:
        print("check: every median ratio meets its target")
    return 1 if missed else 0


def benchmark(args, settings) -> dict:
    """Every measurement in turn; then the report, printed and written; returns the results."""
    began = time.perf_counter()
    registry = zoo.default_registry()
    book = zoo.RecipeBook([zoo.default_registry_path(), PERF / "recipes.yaml"])
    command = " ".join([".venv/bin/python", "benchmarks/perf/run.py", *args.argv])
    results: dict = {"environment": environment(command), "settings": settings}
    with tempfile.TemporaryDirectory(prefix="vae-zoo-perf-") as folder:
        color = color_arrays(Path(folder))
        data, recipes, shapes = {}, {}, {}
        for variant in args.variants:
            overrides = [f"dataset.path={color}"] if variant == "perf_vae_conv_color" else []
            recipes[variant] = book.resolve(variant, registry, overrides)
            shapes[variant] = COLOR_SHAPE if variant == "perf_vae_conv_color" else (28, 28, 1)
            where = Path(folder) / ("color" if overrides else "fashion")
            if not where.exists():
                export_data(recipes[variant], registry, where)
            data[variant] = {"overrides": overrides, "folder": str(where)}
        seed = book.resolve(IS_VARIANT, registry)
        if not (Path(folder) / "fashion").exists():
            export_data(seed, registry, Path(folder) / "fashion")
        peak = {"task": "matmul_peak", "threads": settings["threads"], "xla_flags": settings["xla_flags"]}
        print("matmul peak", flush=True)
        results["matmul_peaks"] = [one_shot(peak, args.timeout)]
        print("training: zoo and PyTorch eager, alternating windows", flush=True)
        results["training"] = training_runs(recipes, settings, data, args.timeout)
        if not args.skip_is:
            print("importance-sampled log-likelihood, alternating windows", flush=True)
            results["importance_sampling"] = is_runs(seed, settings, str(Path(folder) / "fashion"), args.timeout)
        results["matmul_peaks"].append(one_shot(peak, args.timeout))
    results["training_flops_per_image"] = {v: flop_count.training_flops(r, shapes[v]) for v, r in recipes.items()}
    results["is_flops_per_image"] = {
        k: flop_count.importance_sampling_flops(seed, (28, 28, 1), settings[k])
        for k in ("is_samples", "is_small_samples")
    }
    results["batch_size"] = {v: r["train"]["batch_size"] for v, r in recipes.items()}
    results["image_shape"] = {v: list(s) for v, s in shapes.items()}
    results["environment"]["load_average_at_end"] = os.getloadavg()[0]
    results["environment"]["wall_s"] = time.perf_counter() - began
    results["targets"] = perf_report.target_rows(results)
    text = perf_report.markdown(results)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out / 'report.md'} and {out / 'results.json'} ({results['environment']['wall_s'] / 60:.1f} min)")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
