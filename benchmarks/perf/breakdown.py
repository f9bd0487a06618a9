"""Where the seed VAE's time goes: the profile behind the perf report's "what bounds it".

    .venv/bin/python benchmarks/perf/breakdown.py [--out benchmarks/results/perf/breakdown.md]

Training (batch 128): the dense layers' matmuls alone (forward and backward,
as jitted matmuls of the same shapes), the objective's loss and gradient, the
Adam update alone, and the zoo's whole training step. Importance sampling
(100 images x 25 samples = one chunk of 2500 decoder rows): the decoder
network alone, decoder plus likelihood, sampling z with its log-densities, and
the whole chunk. The same training parts for Burda's 784-200-200-50 network at batch 100. The conv VAE: each
convolution's forward and its forward and backward alone, flax's layers and the zoo's, and the whole step. Every figure is the best of five timed blocks; percentages
are of the jax matmul peak measured in the same process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PERF = Path(__file__).resolve().parent
sys.path.insert(0, str(PERF))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import flop_count  # noqa: E402
from measure import zoo_recipe  # noqa: E402

BATCH, CHUNK, IS_IMAGES = 128, 25, 100


def best_ms(call, repeats: int = 20) -> float:
    """Best of five blocks of `repeats` calls, in milliseconds per call."""
    jax.block_until_ready(call())
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(repeats):
            out = call()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - began) / repeats)
    return best * 1e3


def matmul_peak_gflops(n: int = 2048) -> float:
    """Best float32 GFLOP/s of an n^3 jitted matmul."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    matmul = jax.jit(jnp.matmul)
    return 2 * n**3 / best_ms(lambda: matmul(a, a), repeats=5) / 1e6


def dense_matmuls_ms(sizes, x) -> float:
    """Forward and backward matmuls of a chain of dense layers (weights only: no input gradient of x)."""
    weights = [jax.random.normal(jax.random.key(i), s) * 0.01 for i, s in enumerate(sizes)]

    def chain(weights, x):
        h = x
        for w in weights:
            h = h @ w if h.shape[1] == w.shape[0] else h[:, : w.shape[0]] @ w  # the decoder starts from z
        return jnp.sum(h)

    gradient = jax.jit(jax.grad(chain))
    return best_ms(lambda: gradient(weights, x))


def whole_step_ms(experiment, graphdef, params, steps: int = 50, batch: int = BATCH) -> float:
    """The zoo's training step as zoo.train runs it one step per call: best of five blocks, ms per step."""
    from zoo.core.data import batch_indices
    from zoo.training.inputs import run_steps
    from zoo.training.step import TrainState, make_optimizer, make_train_step

    train = experiment.dataset.train
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    optimizer = make_optimizer(1e-3)
    step = make_train_step(graphdef, experiment.objective, experiment.condition, optimizer, 0, True)
    state = TrainState(jax.tree.map(jnp.copy, params), optimizer.init(params))
    indices = batch_indices(len(train.images), batch, 0, 0, steps)
    state, _ = run_steps(step, state, images, labels, indices[:2], 0)
    whole = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        state, _ = run_steps(step, state, images, labels, indices, 0)
        whole = min(whole, (time.perf_counter() - began) / len(indices) * 1e3)
    return whole


def dense_shapes(recipe) -> list[tuple[int, int]]:
    """The (in, out) matmuls of an MLP recipe's forward pass, the encoder's two heads as one."""
    latent, encoder, decoder = recipe["latent_dim"], recipe["encoder"]["hidden"], recipe["decoder"]["hidden"]
    sizes = [784, *encoder]
    shapes = [*zip(sizes[:-1], sizes[1:]), (sizes[-1], 2 * latent)]
    sizes = [latent, *decoder, 784]
    return shapes + list(zip(sizes[:-1], sizes[1:]))


def training_rows(experiment, graphdef, params, recipe, batch: int) -> list[tuple[str, float]]:
    """(part, ms per step) of the training step at `batch`."""
    from zoo.core.interfaces import Batch
    from zoo.training.step import make_optimizer

    images = jnp.asarray(experiment.dataset.train.images)
    x = (images[:batch] > 0.5).astype(jnp.float32).reshape(batch, -1)
    sizes = dense_shapes(recipe)
    loss = jax.jit(
        jax.grad(
            lambda p, rng: experiment.objective(
                nnx.merge(graphdef, p), Batch(x.reshape(images[:batch].shape), None), rng
            )[0]
        )
    )
    optimizer = make_optimizer(1e-3)
    grads = loss(params, jax.random.key(1))
    adam = jax.jit(lambda p, s, g: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(optimizer.update(g, s, p)))
    opt_state = optimizer.init(params)
    whole = whole_step_ms(experiment, graphdef, params, batch=batch)
    return [
        ("dense matmuls alone (forward + backward)", dense_matmuls_ms(sizes, x)),
        ("loss and gradient (zoo objective)", best_ms(lambda: loss(params, jax.random.key(1)))),
        ("Adam update alone", best_ms(lambda: adam(params, opt_state, grads))),
        ("whole training step (zoo.train)", whole),
    ]


def sampling_rows(experiment, graphdef, params) -> list[tuple[str, float]]:
    """(part, ms per chunk) of one importance-sampling chunk of 2500 decoder rows."""
    from zoo.core.model import repeat_rows

    x = (jnp.asarray(experiment.dataset.test.images[:IS_IMAGES]) > 0.5).astype(jnp.float32)
    z = jax.random.normal(jax.random.key(0), (CHUNK * IS_IMAGES, experiment.model.latent_dim))
    model = lambda p: nnx.merge(graphdef, p)  # noqa: E731
    decoder = jax.jit(lambda p, z: model(p).decoder(z, None))
    likelihood = jax.jit(lambda p, z: model(p).decode(z, None).log_prob(repeat_rows(x, CHUNK)))

    @jax.jit
    def proposal(p, key):
        q = model(p).encode(x, None)
        z = q.sample(seed=key, sample_shape=(CHUNK,))
        return model(p).prior_distribution(None, IS_IMAGES).log_prob(z) - q.log_prob(z)

    @jax.jit
    def chunk(p, key):  # as LatentVariableModel.log_likelihood runs each chunk: q and p(z) computed once, outside
        m = model(p)
        q, prior = m.encode(x, None), m.prior_distribution(None, IS_IMAGES)
        return m._log_weights(x, None, q, prior, key, CHUNK, "posterior")

    key = jax.random.key(1)
    return [
        ("decoder network alone", best_ms(lambda: decoder(params, z))),
        ("decoder and Bernoulli log-likelihood", best_ms(lambda: likelihood(params, z))),
        ("encoder, z ~ q and log q, log p(z)", best_ms(lambda: proposal(params, key))),
        ("whole chunk (as log_likelihood runs it, plus one encoder pass)", best_ms(lambda: chunk(params, key))),
    ]


CONV_LAYERS = [  # (name, flax class, zoo class name, in, out, stride, input shape, output pixels)
    ("conv 1->32, stride 2, 28x28 in", nnx.Conv, "Conv", 1, 32, 2, (28, 28, 1), 14 * 14),
    ("conv 32->64, stride 2, 14x14 in", nnx.Conv, "Conv", 32, 64, 2, (14, 14, 32), 7 * 7),
    ("transposed conv 64->64, stride 2, 7x7 in", nnx.ConvTranspose, "ConvTranspose", 64, 64, 2, (7, 7, 64), 7 * 7),
    (
        "transposed conv 64->32, stride 2, 14x14 in",
        nnx.ConvTranspose,
        "ConvTranspose",
        64,
        32,
        2,
        (14, 14, 64),
        14 * 14,
    ),
    ("conv 32->1, stride 1, 28x28 in", nnx.Conv, "Conv", 32, 1, 1, (28, 28, 32), 28 * 28),
]


def conv_rows() -> list[tuple[str, float, float, float, float, float]]:
    """(layer, flax forward ms, flax forward and backward ms, the zoo's two, useful GFLOP) of each convolution of
    perf_vae_conv at batch 128: flax's layers and plugins/layers/conv.py's, from the same parameters.

    Useful FLOPs: 2 x (taps that touch the input) x in x out per input pixel of a transposed convolution (9 taps
    over the 4 output phases of each input pixel), per output pixel of a convolution; forward and backward are
    three times the forward (the kernel's gradient and the input's; the first layer has no input gradient)."""
    import vae_zoo_plugins.layers.conv as conv_layers

    rows = []
    for name, flax_class, zoo_name, cin, cout, stride, shape, pixels in CONV_LAYERS:
        x = jax.random.normal(jax.random.key(0), (BATCH, *shape))
        times = []
        for layer_class in (flax_class, getattr(conv_layers, zoo_name)):
            layer = layer_class(cin, cout, (3, 3), strides=(stride, stride), padding="SAME", rngs=nnx.Rngs(0))
            graphdef, params = nnx.split(layer)
            forward = jax.jit(lambda p, x, g=graphdef: nnx.merge(g, p)(x))
            both = jax.jit(jax.grad(lambda p, x, g=graphdef: jnp.sum(nnx.merge(g, p)(x) ** 2), argnums=(0, 1)))
            times += [
                best_ms(lambda f=forward, p=params, x=x: f(p, x), 5),
                best_ms(lambda f=both, p=params, x=x: f(p, x), 5),
            ]
        forward_flops = 2 * 9 * cin * cout * pixels * BATCH
        rows.append((name, *times, forward_flops * (2 if shape[-1] == 1 else 3) / 1e9))
    return rows


def conv_step_ms() -> float:
    """perf_vae_conv's whole training step with the zoo's layers, one step per call, best of five blocks."""
    recipe, registry = zoo_recipe("perf_vae_conv_transpose")  # the layers conv_rows times
    from zoo.core.assembly import assemble

    experiment = assemble(recipe, registry)
    graphdef, params = nnx.split(experiment.model)
    return whole_step_ms(experiment, graphdef, params)


def conv_table(peak: float) -> str:
    rows = conv_rows()
    step = conv_step_ms()
    lines = [
        "### The conv VAE's convolutions, batch 128: flax's layers (nnx.Conv / nnx.ConvTranspose) and the zoo's "
        "(plugins/layers/conv.py)",
        "",
        "| layer | flax forward ms | flax forward and backward ms | zoo forward ms | zoo forward and backward ms "
        "| zoo / flax (both) | useful GFLOP (both) | zoo GFLOP/s (both) | % of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, flax_fwd, flax_both, zoo_fwd, zoo_both, gflop in rows:
        rate = gflop / zoo_both * 1e3
        lines.append(
            f"| {name} | {flax_fwd:.2f} | {flax_both:.2f} | {zoo_fwd:.2f} | {zoo_both:.2f} "
            f"| {zoo_both / flax_both:.2f} | {gflop:.2f} | {rate:.0f} | {100 * rate / peak:.0f}% |"
        )
    layers = sum(r[4] for r in rows)
    lines += [
        "",
        f"Whole perf_vae_conv_transpose training step with the zoo's layers (one step per call): {step:.2f} ms; "
        f"the five layers' forward and backward alone: {layers:.2f} ms ({100 * layers / step:.0f}%).",
    ]
    return "\n".join(lines)


def table(title: str, rows, flops: float, peak: float, unit: str) -> str:
    """A Markdown table of parts: time, share of the whole (the last row), and the whole's FLOP rate."""
    whole = rows[-1][1]
    lines = [
        f"### {title}",
        "",
        f"| part | ms {unit} | share of the whole | useful GFLOP/s at this time | % of peak |",
        "|---|---|---|---|---|",
    ]
    for name, ms in rows:
        rate = flops / ms / 1e6
        lines.append(f"| {name} | {ms:.2f} | {100 * ms / whole:.0f}% | {rate:.0f} | {100 * rate / peak:.0f}% |")
    lines += [
        "",
        "The FLOP rate is meaningful for the matmul rows and the whole; for the other parts it only "
        "says how fast the whole would be if that part were all of it.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Print (and optionally write) the breakdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args(argv)
    recipe, registry = zoo_recipe("perf_vae_mlp")
    from zoo.core.assembly import assemble

    experiment = assemble(recipe, registry)
    graphdef, params = nnx.split(experiment.model)
    peak = matmul_peak_gflops()
    train_flops = flop_count.training_flops(recipe, (28, 28, 1)) * BATCH
    burda_recipe, burda_registry = zoo_recipe("perf_vae_burda")
    burda = assemble(burda_recipe, burda_registry)
    burda_graphdef, burda_params = nnx.split(burda.model)
    burda_batch = burda_recipe["train"]["batch_size"]
    burda_flops = flop_count.training_flops(burda_recipe, (28, 28, 1)) * burda_batch
    decoder_flops = flop_count.importance_sampling_flops(recipe, (28, 28, 1), CHUNK) * IS_IMAGES
    text = (
        "\n\n".join(
            [
                f"jax matmul peak in this process: {peak:.0f} GFLOP/s (2048^3, float32); {jax.devices()[0].device_kind}",
                table(
                    "Training step, batch 128 (useful FLOPs: the dense layers' forward and backward)",
                    training_rows(experiment, graphdef, params, recipe, BATCH),
                    train_flops,
                    peak,
                    "per step",
                ),
                table(
                    f"Training step of perf_vae_burda (784-200-200-50, tanh), batch {burda_batch}",
                    training_rows(burda, burda_graphdef, burda_params, burda_recipe, burda_batch),
                    burda_flops,
                    peak,
                    "per step",
                ),
                table(
                    "Importance sampling, one chunk of 25 samples x 100 images (useful FLOPs: the decoder's)",
                    sampling_rows(experiment, graphdef, params),
                    decoder_flops,
                    peak,
                    "per chunk",
                ),
                conv_table(peak),
            ]
        )
        + "\n"
    )
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
