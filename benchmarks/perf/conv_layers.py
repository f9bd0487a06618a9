"""flax's convolution layers against the zoo's (plugins/layers/conv.py), in alternating rounds in one process.

    .venv/bin/python benchmarks/perf/conv_layers.py [--rounds 7] [--steps 10] [--no-layers] [--no-step]

Layers: each convolution of perf_vae_conv at batch 128, forward and backward
(gradients of the kernel, the bias and, except for the first layer, whose
input is the data, the input), flax's layer and the zoo's holding the same
parameters. Whole step: perf_vae_conv's training step as zoo train runs it
(zoo.training.step.make_train_step), the model built with flax's layers and with
the zoo's, from the same parameters. Each round times both, in alternating
order; the figure to read is the median over rounds of the ratio zoo / flax
within a round (this machine's cores are shared, so single times drift).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PERF = Path(__file__).resolve().parent
sys.path.insert(0, str(PERF))
sys.path.insert(0, str(PERF.parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

BATCH = 128
LAYERS = [  # (name, flax class, zoo class name, in, out, stride, input shape, input gradient)
    ("conv 1->32, stride 2, 28x28", nnx.Conv, "Conv", 1, 32, 2, (28, 28, 1), False),
    ("conv 32->64, stride 2, 14x14", nnx.Conv, "Conv", 32, 64, 2, (14, 14, 32), True),
    ("transposed 64->64, stride 2, 7x7", nnx.ConvTranspose, "ConvTranspose", 64, 64, 2, (7, 7, 64), True),
    ("transposed 64->32, stride 2, 14x14", nnx.ConvTranspose, "ConvTranspose", 64, 32, 2, (14, 14, 64), True),
    ("conv 32->1, stride 1, 28x28", nnx.Conv, "Conv", 32, 1, 1, (28, 28, 32), True),
]


def alternate(calls: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """{name: (median ms, median ratio to the first call)} over rounds, the order rotating each round."""
    names = list(calls)
    for call in calls.values():
        jax.block_until_ready(call())
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            began = time.perf_counter()
            jax.block_until_ready(calls[name]())
            times[name].append((time.perf_counter() - began) * 1e3)
    first = np.array(times[names[0]])
    return {n: (float(np.median(t)), float(np.median(np.array(t) / first))) for n, t in times.items()}


def layer_rows(rounds: int) -> None:
    import vae_zoo_plugins.layers.conv as conv_layers

    for name, flax_class, zoo_name, cin, cout, stride, shape, input_grad in LAYERS:
        flax_layer = flax_class(cin, cout, (3, 3), strides=(stride, stride), padding="SAME", rngs=nnx.Rngs(0))
        zoo_layer = getattr(conv_layers, zoo_name)(cin, cout, (3, 3), strides=stride, padding="SAME", rngs=nnx.Rngs(0))
        x = jax.random.normal(jax.random.key(1), (BATCH, *shape))
        argnums = (0, 1) if input_grad else 0
        calls = {}
        for side, layer in (("flax", flax_layer), ("zoo", zoo_layer)):
            graphdef, params = nnx.split(layer)
            grad = jax.jit(jax.grad(lambda p, x, g=graphdef: jnp.sum(nnx.merge(g, p)(x) ** 2), argnums=argnums))
            calls[side] = lambda grad=grad, params=params, x=x: [grad(params, x) for _ in range(3)]
        (flax_ms, _), (zoo_ms, ratio) = alternate(calls, rounds).values()
        print(f"| {name} | {flax_ms / 3:.1f} | {zoo_ms / 3:.1f} | {ratio:.3f} |", flush=True)


def step_row(rounds: int, steps: int) -> None:
    import vae_zoo_plugins.base.conv as conv
    from measure import zoo_recipe
    from zoo.core.data import batch_indices
    from zoo.core.assembly import assemble
    from zoo.training.inputs import run_steps
    from zoo.training.step import TrainState, make_optimizer, make_train_step

    recipe, registry = zoo_recipe("perf_vae_conv_transpose")  # the transposed layers this compares
    experiment = assemble(recipe, registry)
    graphdef, params = nnx.split(experiment.model)
    conv.Conv, conv.ConvTranspose = nnx.Conv, nnx.ConvTranspose  # the same network with flax's layers
    flax_graphdef, flax_params = nnx.split(assemble(recipe, registry).model)
    assert jax.tree.structure(flax_params) == jax.tree.structure(params)
    optimizer = make_optimizer(recipe["train"]["learning_rate"])
    train = experiment.dataset.train
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    indices = batch_indices(len(train.images), BATCH, 0, 0, steps)
    calls = {}
    for side, g in (("flax", flax_graphdef), ("zoo", graphdef)):
        step = make_train_step(g, experiment.objective, experiment.condition, optimizer, 0, True)
        state = [TrainState(jax.tree.map(jnp.copy, params), optimizer.init(params))]

        def run(step=step, state=state):
            state[0], metrics = run_steps(step, state[0], images, labels, indices, 0)
            return metrics["loss"]

        calls[side] = run
    result = alternate(calls, rounds)
    print(
        f"| whole training step, perf_vae_conv_transpose | {result['flax'][0] / steps:.1f} | {result['zoo'][0] / steps:.1f} "
        f"| {result['zoo'][1]:.3f} |",
        flush=True,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round and side")
    parser.add_argument("--no-layers", action="store_true")
    parser.add_argument("--no-step", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"batch {BATCH}, {args.rounds} alternating rounds; ms per call (median over rounds); zoo / flax: "
        "median over rounds of the ratio within a round\n"
    )
    print("| forward and backward | flax ms | zoo ms | zoo / flax |\n|---|---|---|---|")
    if not args.no_layers:
        layer_rows(args.rounds)
    if not args.no_step:
        step_row(args.rounds, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
