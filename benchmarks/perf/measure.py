"""One measurement of the perf benchmark, in a process of its own (run.py starts them).

    python benchmarks/perf/measure.py '{"task": "zoo_train", "variant": "perf_vae_mlp", ...}'

prints one JSON line: the figures and this process's peak resident memory.
Tasks: matmul_peak, zoo_train, torch_train, zoo_is, torch_is. The torch
tasks never import jax (nor the zoo), so their memory is torch's alone; they
read the zoo's own train and test images from the .npy files run.py wrote.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

PERF = Path(__file__).resolve().parent
X_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


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
    """run(count, rng) -> log p(x) of the first `count` test images, as `zoo eval` estimates it."""
    from flax import nnx
    from zoo.evaluation.evaluate import make_importance_sampled
    from zoo.training.validation import over_batches
    from zoo.core.interfaces import Split
    from zoo.core.assembly import assemble

    experiment = assemble(recipe, registry)
    graphdef, params = nnx.split(experiment.model)
    estimate = make_importance_sampled(graphdef, experiment.condition, num_samples, chunk_size)
    test = experiment.dataset.test

    def run(count, rng):
        return over_batches(estimate, params, Split(test.images[:count], test.labels[:count]), rng, batch_size)

    return run


# --- Measurements.


def zoo_recipe(variant):
    """The resolved perf recipe and the installed registry."""
    import zoo

    registry = zoo.default_registry()
    book = zoo.RecipeBook([zoo.default_registry_path(), PERF / "recipes.yaml"])
    return book.resolve(variant, registry), registry


def timed_windows(run, batch_size, warmup, steps, windows):
    """(first call seconds, images/s of each timed window) of `run(start, count)`."""
    began = time.perf_counter()
    run(0, 1)
    first = time.perf_counter() - began
    run(1, warmup)
    rates, start = [], 1 + warmup
    for _ in range(windows):
        began = time.perf_counter()
        losses = run(start, steps)
        rates.append(steps * batch_size / (time.perf_counter() - began))
        start += steps
    if not np.all(np.isfinite(losses)):
        raise RuntimeError(f"the loss is not finite: {losses}")
    return first, rates


def matmul_peak(spec):
    """Best float32 GFLOP/s of an n x n x n matmul, numpy and jax."""
    import jax
    import jax.numpy as jnp

    n, repeats = spec.get("size", 2048), spec.get("repeats", 10)
    a, b = (np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in (0, 1))
    best = {}
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    matmul = jax.jit(jnp.matmul)
    for name, call in (("numpy", lambda: a @ b), ("jax", lambda: matmul(ja, jb).block_until_ready())):
        call()
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            call()
            times.append(time.perf_counter() - began)
        best[f"{name}_gflops"] = 2 * n**3 / min(times) / 1e9
    return {**best, "size": n, "jax_device": jax.devices()[0].device_kind}


def zoo_train(spec):
    """Images/s of the zoo's training path, first-step (compile) time and XLA's FLOP count."""
    recipe, registry = zoo_recipe(spec["variant"])
    batch = recipe["train"]["batch_size"]
    run, lower, batches = zoo_training_path(recipe, registry)
    from zoo.training.inputs import CALIBRATION_STEPS

    warmup = max(spec["warmup"], CALIBRATION_STEPS if batches.loop == "auto" else 0)  # the loop chosen before timing
    first, rates = timed_windows(run, batch, warmup, spec["steps"], spec["windows"])
    cost = lower().compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {
        "first_step_s": first,
        "images_per_s": rates,
        "xla_flops_per_image": float(cost["flops"]) / batch,
        "loop": batches.loop,
        "loop_seconds_per_step": batches.timings,
    }


def torch_train(spec):
    """Images/s of the torch reference (eager, or torch.compile with spec['compile'])."""
    import torch
    import torch_reference

    recipe = json.loads(spec["recipe"])
    batch, seed = recipe["train"]["batch_size"], recipe["train"]["seed"]
    images = torch.from_numpy(np.load(Path(spec["data"]) / "train_images.npy"))
    labels = torch.from_numpy(np.load(Path(spec["data"]) / "train_labels.npy").astype(np.int64))
    torch.manual_seed(seed)
    model = torch_reference.build_reference(recipe, X_SHAPE, NUM_CLASSES)
    step = torch_reference.make_train_step(model, recipe["train"]["learning_rate"], compile=spec.get("compile", False))
    per_epoch = len(images) // batch

    def run(start, count):
        losses = []
        for position in range(start, start + count):
            epoch, offset = divmod(position, per_epoch)
            if offset == 0 or position == start:  # the zoo's schedule: a seeded shuffle per epoch
                order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(images)))
            rows = order[offset * batch : (offset + 1) * batch]
            x = torch.bernoulli(images[rows])  # dynamic binarization, as the zoo's step does
            losses.append(step(x, model.condition(labels[rows])))
        return np.array([loss.item() for loss in losses])

    first, rates = timed_windows(run, batch, spec["warmup"], spec["steps"], spec["windows"])
    return {
        "first_step_s": first,
        "images_per_s": rates,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def zoo_is(spec):
    """Images/s of the zoo's importance-sampled log-likelihood on the first test images."""
    import jax

    recipe, registry = zoo_recipe(spec["variant"])
    run = zoo_importance_sampling(recipe, registry, spec["num_samples"], spec["chunk_size"], spec["batch_size"])
    began = time.perf_counter()
    run(spec["batch_size"], jax.random.key(0))
    first = time.perf_counter() - began
    began = time.perf_counter()
    estimates = run(spec["images"], jax.random.key(1))
    seconds = time.perf_counter() - began
    return {
        "first_batch_s": first,
        "images_per_s": [spec["images"] / seconds],
        "mean_log_likelihood": float(np.mean(estimates)),
    }


def torch_is(spec):
    """Images/s of the torch reference's importance-sampled log-likelihood, same images, chunks and batches."""
    import torch
    import torch_reference

    recipe = json.loads(spec["recipe"])
    images = torch.from_numpy(np.load(Path(spec["data"]) / "test_images.npy")[: spec["images"]])
    labels = torch.from_numpy(np.load(Path(spec["data"]) / "test_labels.npy")[: spec["images"]].astype(np.int64))
    torch.manual_seed(0)
    model = torch_reference.build_reference(recipe, X_SHAPE, NUM_CLASSES).eval()
    size = spec["batch_size"]
    estimate = lambda rows: torch_reference.log_likelihood(
        model, images[rows], model.condition(labels[rows]), spec["num_samples"], spec["chunk_size"]
    )
    began = time.perf_counter()
    estimate(slice(0, size))
    first = time.perf_counter() - began
    began = time.perf_counter()
    estimates = torch.cat([estimate(slice(start, start + size)) for start in range(0, len(images), size)])
    seconds = time.perf_counter() - began
    return {
        "first_batch_s": first,
        "images_per_s": [len(images) / seconds],
        "mean_log_likelihood": float(estimates.mean()),
        "threads": torch.get_num_threads(),
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


TASKS = {
    "matmul_peak": matmul_peak,
    "zoo_train": zoo_train,
    "torch_train": torch_train,
    "zoo_is": zoo_is,
    "torch_is": torch_is,
}


def main(argv=None) -> int:
    """Run the task described by the JSON argument and print its figures as one JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    sys.path.insert(0, str(PERF))
    result = TASKS[spec["task"]](spec)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
