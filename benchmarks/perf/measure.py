"""One side of the perf benchmark, in a process of its own (run.py starts them).

    python benchmarks/perf/measure.py '{"task": "zoo_train", "variant": "perf_vae_mlp", "threads": 2, ...}'

`matmul_peak` prints one JSON line and exits. The other tasks (zoo_train,
torch_train, zoo_is, torch_is) are workers: they build their side, compile it
and warm it up, all outside any timed window, and print one JSON line (the
set-up's figures); then, for each line read from stdin, `{"steps": n}` (training)
or `{"images": n}` (importance sampling) times one window and prints its
images/s as one JSON line, until `"done"`, answered by the process's peak
resident memory and its thread settings. run.py keeps a zoo worker and a torch
worker of one architecture alive together and alternates their windows, so
both sides meet the same load, and neither side's compilation, warm-up or
process start-up falls inside a window.

Threads are set before jax or torch is imported, equally on both sides:
`threads` CPUs of this process's affinity mask (XLA's CPU client sizes its
intra-op Eigen pool from it), torch.set_num_threads(threads), and
OMP_NUM_THREADS/MKL_NUM_THREADS; `xla_flags` are added to XLA_FLAGS. What took
effect (the affinity, torch's intra- and inter-op threads, the number of XLA
Eigen pool threads alive) is reported, not assumed.

The torch workers never import jax (nor the zoo), so their memory is torch's
alone; they read the zoo's own train and test images from the .npy files
run.py wrote.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

PERF = Path(__file__).resolve().parent
NUM_CLASSES = 10


# --- Threads: set before jax or torch starts.


def apply_threads(spec: dict) -> None:
    """Restrict this process to spec['threads'] CPUs (0: leave it) and add spec['xla_flags'] to XLA_FLAGS."""
    threads = spec.get("threads") or 0
    if threads:
        allowed = sorted(os.sched_getaffinity(0))
        if threads < len(allowed):
            os.sched_setaffinity(0, allowed[:threads])
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
    if spec.get("xla_flags"):
        os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), spec["xla_flags"]]))


def thread_names() -> dict[str, int]:
    """How many live threads of this process carry each name."""
    names: collections.Counter = collections.Counter()
    for task in os.listdir("/proc/self/task"):
        try:
            names[Path(f"/proc/self/task/{task}/comm").read_text().strip()] += 1
        except OSError:
            continue
    return dict(names)


def thread_settings() -> dict:
    """The thread settings in effect in this process, as far as it can tell."""
    settings: dict = {
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        settings["torch_intra_op_threads"] = torch.get_num_threads()
        settings["torch_inter_op_threads"] = torch.get_num_interop_threads()
    if "jax" in sys.modules:
        settings["xla_eigen_pool_threads"] = thread_names().get("tf_XLAEigen", 0)
    return settings


def set_torch_threads(spec: dict) -> None:
    """torch's intra-op threads, as many as the zoo's side gets."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])


# --- The zoo side: the training and evaluation paths exactly as zoo train and zoo eval drive them.
# Keep these two in step with zoo.training.experiment.train_and_evaluate and zoo.evaluation.evaluate.evaluate.


def zoo_training_path(recipe, registry):
    """(run(start, count) -> losses, lower() -> one step lowered, input), as train_and_evaluate trains:
    the in-memory input with the recipe's train.loop (auto: the first CALIBRATION_STEPS steps choose)."""
    import jax.numpy as jnp
    from flax import nnx
    from zoo.core.data import batch_indices
    from zoo.core.assembly import assemble
    from zoo.core.recipes import train_config
    from zoo.training.step import TrainState, make_optimizer, make_train_step
    from zoo.training.loop import training_input

    experiment = assemble(recipe, registry)
    config = train_config(recipe)
    graphdef, params = nnx.split(experiment.model)
    optimizer = make_optimizer(config)
    state = TrainState(params, optimizer.init(params))
    train = experiment.dataset.train
    batches = training_input(experiment, config, graphdef, optimizer, "memory", 0, config.steps)
    train_step = make_train_step(
        graphdef,
        experiment.objective,
        experiment.condition,
        optimizer,
        config.seed,
        experiment.dataset.dynamic_binarization,
    )

    def run(start, count):
        nonlocal state
        state, metrics = batches.run(state, start, start + count)  # returns host arrays: blocks
        return metrics["loss"]

    def lower():
        images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
        chunk = jnp.asarray(batch_indices(len(train.images), config.batch_size, config.seed, 0, 1))
        return train_step.lower(state, images, labels, chunk, 0, 0)

    return run, lower, batches


def zoo_importance_sampling(recipe, registry, num_samples, chunk_size, batch_size):
    """(run(first, count, rng) -> log p(x) of test images first.., as `zoo eval` estimates it; test split size)."""
    from flax import nnx
    from zoo.evaluation.evaluate import make_importance_sampled
    from zoo.training.validation import over_batches
    from zoo.core.interfaces import Split
    from zoo.core.assembly import assemble

    experiment = assemble(recipe, registry)
    graphdef, params = nnx.split(experiment.model)
    estimate = make_importance_sampled(graphdef, experiment.condition, num_samples, chunk_size)
    test = experiment.dataset.test

    def run(first, count, rng):
        rows = slice(first, first + count)
        return over_batches(estimate, params, Split(test.images[rows], test.labels[rows]), rng, batch_size)

    return run, len(test.images)


def zoo_recipe(variant, overrides=()):
    """The resolved perf recipe (with `overrides`, key=value) and the installed registry."""
    import zoo

    registry = zoo.default_registry()
    book = zoo.RecipeBook([zoo.default_registry_path(), PERF / "recipes.yaml"])
    return book.resolve(variant, registry, list(overrides)), registry


# --- Workers: set up and warm up, then time windows on request.


def warm_up(run, batch_size, first_steps, min_steps, min_seconds):
    """Untimed: run(0, 1) (the compile), then run(1, first_steps - 1), then more steps until
    min_steps have run and min_seconds passed; (first call s, next step, warm images/s)."""
    began = time.perf_counter()
    run(0, 1)
    first = time.perf_counter() - began
    start = 1
    if first_steps > 1:
        run(start, first_steps - 1)
        start = first_steps
    began, done = time.perf_counter(), 0
    while done < min_steps or time.perf_counter() - began < min_seconds:
        run(start, 10)
        start, done = start + 10, done + 10
    return first, start, done * batch_size / (time.perf_counter() - began)


class TrainWorker:
    """Shared by both sides' training: windows of `steps` steps from where the last one stopped."""

    batch_size: int
    position: int

    def run(self, start: int, count: int) -> np.ndarray:
        raise NotImplementedError

    def window(self, request: dict) -> dict:
        steps = request["steps"]
        began = time.perf_counter()
        losses = self.run(self.position, steps)
        seconds = time.perf_counter() - began
        self.position += steps
        if not np.all(np.isfinite(losses)):
            raise RuntimeError(f"the loss is not finite: {losses}")
        return {"images_per_s": steps * self.batch_size / seconds, "seconds": seconds, "steps": steps}


class ZooTrain(TrainWorker):
    """The zoo's training path (zoo_training_path) of one variant."""

    def __init__(self, spec):
        from zoo.training.inputs import CALIBRATION_STEPS

        recipe, registry = zoo_recipe(spec["variant"], spec.get("overrides") or ())
        self.batch_size = recipe["train"]["batch_size"]
        self.run_steps, lower, batches = zoo_training_path(recipe, registry)
        # The loop is chosen (train.loop: auto calibrates over its first CALIBRATION_STEPS steps) before timing.
        first_steps = 1 + CALIBRATION_STEPS if batches.loop == "auto" else 1
        first, self.position, rate = warm_up(
            self.run, self.batch_size, first_steps, spec["warmup_steps"], spec["warmup_s"]
        )
        cost = lower().compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        self.ready = {
            "first_step_s": first,
            "warmup_images_per_s": rate,
            "xla_flops_per_image": float(cost["flops"]) / self.batch_size,
            "loop": batches.loop,
            "loop_seconds_per_step": batches.timings,
        }

    def run(self, start, count):
        return self.run_steps(start, count)


class TorchTrain(TrainWorker):
    """The torch reference's training (eager, or torch.compile with spec['compile'])."""

    def __init__(self, spec):
        import torch
        import torch_reference

        set_torch_threads(spec)
        recipe = json.loads(spec["recipe"])
        self.batch_size, self.seed = recipe["train"]["batch_size"], recipe["train"]["seed"]
        self.images = torch.from_numpy(np.load(Path(spec["data"]) / "train_images.npy"))
        self.labels = torch.from_numpy(np.load(Path(spec["data"]) / "train_labels.npy").astype(np.int64))
        torch.manual_seed(self.seed)
        self.model = torch_reference.build_reference(recipe, tuple(self.images.shape[1:]), NUM_CLASSES)
        self.step = torch_reference.make_train_step(
            self.model, recipe["train"]["learning_rate"], compile=spec.get("compile", False)
        )
        self.per_epoch = len(self.images) // self.batch_size
        first, self.position, rate = warm_up(self.run, self.batch_size, 1, spec["warmup_steps"], spec["warmup_s"])
        self.ready = {"first_step_s": first, "warmup_images_per_s": rate}

    def run(self, start, count):
        import torch

        losses = []
        for position in range(start, start + count):
            epoch, offset = divmod(position, self.per_epoch)
            if offset == 0 or position == start:  # the zoo's schedule: a seeded shuffle per epoch
                order = torch.from_numpy(np.random.default_rng([self.seed, epoch]).permutation(len(self.images)))
            rows = order[offset * self.batch_size : (offset + 1) * self.batch_size]
            x = torch.bernoulli(self.images[rows])  # dynamic binarization, as the zoo's step does
            losses.append(self.step(x, self.model.condition(self.labels[rows])))
        return np.array([loss.item() for loss in losses])


class ISWorker:
    """Shared by both sides' importance sampling: windows of `images` test images, batch by batch."""

    def __init__(self, spec, available: int):
        self.batch_size, self.available, self.windows = spec["batch_size"], available, 0
        if spec["images"] % self.batch_size or spec["images"] > available:
            raise ValueError(f"images ({spec['images']}) must be a multiple of {self.batch_size}, at most {available}")
        began = time.perf_counter()
        self.estimate(0, self.batch_size, seed=0)  # compiles (zoo) or warms the allocator (torch)
        self.ready = {"first_batch_s": time.perf_counter() - began}
        self.log_likelihoods: list[float] = []

    def estimate(self, first: int, count: int, seed: int) -> np.ndarray:
        raise NotImplementedError

    def window(self, request: dict) -> dict:
        count = request["images"]
        first = (self.windows * count) % (self.available - count + 1)
        self.windows += 1
        began = time.perf_counter()
        estimates = self.estimate(first, count, seed=self.windows)
        seconds = time.perf_counter() - began
        return {"images_per_s": count / seconds, "seconds": seconds, "mean_log_likelihood": float(np.mean(estimates))}


class ZooIS(ISWorker):
    """The zoo's importance-sampled log-likelihood (make_importance_sampled, as zoo eval runs it)."""

    def __init__(self, spec):
        recipe, registry = zoo_recipe(spec["variant"], spec.get("overrides") or ())
        self.run, available = zoo_importance_sampling(
            recipe, registry, spec["num_samples"], spec["chunk_size"], spec["batch_size"]
        )
        super().__init__(spec, available)

    def estimate(self, first, count, seed):
        import jax

        return np.asarray(self.run(first, count, jax.random.key(seed)))


class TorchIS(ISWorker):
    """The torch reference's importance-sampled log-likelihood: same images, chunks and batches."""

    def __init__(self, spec):
        import torch
        import torch_reference

        set_torch_threads(spec)
        recipe = json.loads(spec["recipe"])
        self.spec, self.reference = spec, torch_reference
        self.images = torch.from_numpy(np.load(Path(spec["data"]) / "test_images.npy"))
        self.labels = torch.from_numpy(np.load(Path(spec["data"]) / "test_labels.npy").astype(np.int64))
        torch.manual_seed(0)
        self.model = torch_reference.build_reference(recipe, tuple(self.images.shape[1:]), NUM_CLASSES).eval()
        super().__init__(spec, len(self.images))

    def estimate(self, first, count, seed):
        import torch

        torch.manual_seed(seed)
        batches = []
        for start in range(first, first + count, self.batch_size):
            rows = slice(start, start + self.batch_size)
            batches.append(
                self.reference.log_likelihood(
                    self.model,
                    self.images[rows],
                    self.model.condition(self.labels[rows]),
                    self.spec["num_samples"],
                    self.spec["chunk_size"],
                )
            )
        return torch.cat(batches).numpy()


def matmul_peak(spec):
    """Best float32 GFLOP/s of an n x n x n matmul in numpy, jax and torch (at the same threads),
    with what each library runs it on: the machine as each library sees it."""
    import jax
    import jax.numpy as jnp
    import torch

    set_torch_threads(spec)
    n, repeats = spec.get("size", 2048), spec.get("repeats", 10)
    a, b = (np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in (0, 1))
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    matmul = jax.jit(jnp.matmul)
    best = {}
    calls = (("numpy", lambda: a @ b), ("jax", lambda: matmul(ja, jb).block_until_ready()), ("torch", lambda: ta @ tb))
    for name, call in calls:
        call()
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            call()
            times.append(time.perf_counter() - began)
        best[f"{name}_gflops"] = 2 * n**3 / min(times) / 1e9
    return {
        **best,
        "size": n,
        "jax_device": jax.devices()[0].device_kind,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "libraries": matmul_libraries(),
        "threads": thread_settings(),
    }


def matmul_libraries() -> dict:
    """Which library multiplies matrices for each side, and for which instruction set it was chosen: numpy's
    OpenBLAS names the kernel set it picked for this CPU (e.g. Haswell: AVX2); torch's build names MKL and
    oneDNN (MKL runs its AVX2 code on AMD processors); XLA picks its own kernels (YNNPACK/Eigen, AVX-512
    where the CPU has it)."""
    import torch

    blas = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {})
    config = [line.strip(" -") for line in torch.__config__.show().splitlines()]
    return {
        "numpy_blas": f"{blas.get('name')} {blas.get('openblas configuration', '')}".strip(),
        "torch": [line for line in config if "Math Kernel" in line or "MKL-DNN" in line],
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (VmHWM).

    Not getrusage's ru_maxrss: Linux carries that across exec, so a child
    would report its parent's size at fork when that is larger.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: KiB on Linux, bytes on macOS


WORKERS = {"zoo_train": ZooTrain, "torch_train": TorchTrain, "zoo_is": ZooIS, "torch_is": TorchIS}


def say(figures: dict) -> None:
    print(json.dumps(figures), flush=True)


def serve(spec: dict) -> None:
    """Set up the worker, then answer window requests from stdin until "done"."""
    worker = WORKERS[spec["task"]](spec)
    say({**worker.ready, "peak_rss_mib": peak_rss_mib()})
    for line in sys.stdin:
        request = json.loads(line)
        if request == "done":
            break
        say(worker.window(request))
    say({"peak_rss_mib": peak_rss_mib(), "threads": thread_settings()})


def main(argv=None) -> int:
    """Run the task the JSON argument describes: print its figures, or serve its windows."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    apply_threads(spec)
    sys.path.insert(0, str(PERF))
    if spec["task"] == "matmul_peak":
        say({**matmul_peak(spec), "peak_rss_mib": peak_rss_mib()})
    else:
        serve(spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
