"""The perf benchmark compares like with like: with the zoo model's weights and the
same noise, the torch reference computes the zoo's loss and IS estimate, and the
FLOP counter agrees with counts by hand."""

from __future__ import annotations

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import zoo
from zoo.core.interfaces import Batch
from zoo.core.objectives import elbo

from tests.conftest import REPO, digits_as_mnist

PERF = REPO / "benchmarks" / "perf"
sys.path.append(str(PERF))  # appended: its modules never shadow an installed one
import flop_count  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(
    not HAVE_TORCH and os.environ.get("CI") != "true",
    reason="torch is not installed: pip install -c constraints.txt -e '.[perf]'",
)
SMALL = {
    "perf_vae_mlp": ["encoder.hidden=[32, 24]", "decoder.hidden=[24, 32]", "latent_dim=8"],
    "perf_cvae_mlp": ["encoder.hidden=[32]", "decoder.hidden=[32]", "latent_dim=6"],
    "perf_vae_conv": ["encoder.channels=[4, 8]", "encoder.hidden=16", "decoder.channels=[8, 4]", "latent_dim=5"],
}
for _upsample in ("transpose", "resize", "pixel_shuffle"):  # every upsampling of the conv decoder
    SMALL[f"perf_vae_conv:{_upsample}"] = [*SMALL["perf_vae_conv"], f"decoder.upsample={_upsample}"]


@pytest.fixture(scope="module")
def perf_book():
    return zoo.RecipeBook([REPO / "registry.yaml", PERF / "recipes.yaml"])


def zoo_and_reference(variant, perf_book, registry):
    """A small zoo model of `variant` and the torch reference holding the same weights."""
    import torch_reference

    recipe = perf_book.resolve(variant.split(":")[0], registry, SMALL[variant])
    c_shape = (10,) if recipe["condition"] else None
    model = zoo.build_model(recipe, registry, x_shape=(28, 28, 1), c_shape=c_shape, rngs=nnx.Rngs(3))
    reference = torch_reference.build_reference(recipe, (28, 28, 1), num_classes=10)
    torch_reference.copy_zoo_params(reference, model)
    return model, reference


def real_batch(count=6):
    """Binarized real digits as 28x28x1 images, their one-hot labels, and both as torch tensors."""
    import torch

    images, labels = digits_as_mnist(count)
    x = (images[..., None] > 127).astype(np.float32)
    return x, labels, torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def posterior_noise(model, x, c, rng, sample_shape=()):
    """The standard-normal eps behind the zoo's draw z ~ q(z | x, c) for this key."""
    q = model.encode(x, c)
    z = q.sample(seed=rng, sample_shape=sample_shape)
    return np.array((z - q.loc) / q.scale_diag)


def models_and_batch(variant, perf_book, registry):
    """(zoo model, PyTorch reference, x, c, x and labels as tensors) on one real batch."""
    model, reference = zoo_and_reference(variant, perf_book, registry)
    x, labels, tx, tlabels = real_batch()
    c = jax.nn.one_hot(labels, 10) if model.conditional else None
    return model, reference, x, c, tx, tlabels


@needs_torch
@pytest.mark.parametrize("variant", sorted(SMALL))
def test_reference_loss_equals_the_zoo_elbo_loss(variant, perf_book, registry):
    import torch
    import torch_reference

    model, reference, x, c, tx, tlabels = models_and_batch(variant, perf_book, registry)
    rng = jax.random.key(7)
    zoo_loss, _ = elbo()(model, Batch(jnp.asarray(x), c), rng)
    eps = torch.from_numpy(posterior_noise(model, jnp.asarray(x), c, rng))
    torch_loss = torch_reference.negative_elbo(reference, tx, reference.condition(tlabels), eps)
    assert 100 < float(zoo_loss) < 2000  # binary 28x28 images under an untrained model
    np.testing.assert_allclose(torch_loss.item(), float(zoo_loss), rtol=2e-5)


@needs_torch
@pytest.mark.parametrize("variant", sorted(SMALL))
def test_reference_importance_sampling_equals_the_zoo_estimate(variant, perf_book, registry):
    import torch
    import torch_reference

    model, reference, x, c, tx, tlabels = models_and_batch(variant, perf_book, registry)
    rng = jax.random.key(11)
    zoo_estimate = model.log_likelihood(jnp.asarray(x), c, rng, num_samples=6, chunk_size=3)
    keys = jax.random.split(rng, 2)  # the zoo draws chunk i with the i-th of these keys

    def noise(index, shape):
        return torch.from_numpy(posterior_noise(model, jnp.asarray(x), c, keys[index], (shape[0],)))

    torch_estimate = torch_reference.log_likelihood(reference, tx, reference.condition(tlabels), 6, 3, noise=noise)
    np.testing.assert_allclose(torch_estimate.numpy(), np.asarray(zoo_estimate), rtol=2e-5)


@needs_torch
def test_reference_train_step_lowers_the_loss(perf_book, registry):
    import torch
    import torch_reference

    _, reference = zoo_and_reference("perf_vae_mlp", perf_book, registry)
    _, _, tx, _ = real_batch(32)
    torch.manual_seed(0)
    step = torch_reference.make_train_step(reference, 1e-3)
    losses = [step(tx, None).item() for _ in range(30)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 20


@needs_torch
def test_reference_refuses_what_it_does_not_implement(perf_book, registry):
    import torch_reference

    recipe = perf_book.resolve("perf_vae_mlp", registry, ["likelihood={name: gaussian_identity}"])
    with pytest.raises(ValueError, match="likelihood 'bernoulli' only"):
        torch_reference.build_reference(recipe, (28, 28, 1))


def test_seed_vae_costs_9_52_mflop_per_training_image(perf_book, registry):
    recipe = perf_book.resolve("perf_vae_mlp", registry)
    macs = 784 * 512 + 512 * 512 + 2 * 512 * 256 + 256 * 512 + 512 * 512 + 512 * 784
    assert flop_count.training_flops(recipe, (28, 28, 1)) == 6 * macs - 2 * 784 * 512 == 9_519_104
    assert flop_count.importance_sampling_flops(recipe, (28, 28, 1), 1) == 2 * macs


def test_tiny_cvae_flops_by_hand(perf_book, registry):
    # 3 pixels + 2 classes -> 4 -> (loc, log_scale) 1; decoder 1 + 2 -> 4 -> 3.
    recipe = perf_book.resolve("perf_cvae_mlp", registry, ["encoder.hidden=[4]", "decoder.hidden=[4]", "latent_dim=1"])
    forward = 5 * 4 + 4 * 1 + 4 * 1 + 3 * 4 + 4 * 3
    input_grads = 4 * 1 + 4 * 1 + 1 * 4 + 4 * 3  # none for [x, c]; only z's column of the decoder's first layer
    assert flop_count.training_flops(recipe, (3,), num_classes=2) == 4 * forward + 2 * input_grads


def test_conv_flops_match_the_parameter_shapes(perf_book, registry):
    # Each layer's multiply-accumulates are its kernel size times the positions it is applied at;
    # the kernel sizes come from the zoo's own parameters, independently of the counter.
    recipe = perf_book.resolve("perf_vae_conv", registry)
    model = zoo.build_model(recipe, registry, x_shape=(28, 28, 1), c_shape=None, rngs=nnx.Rngs(0))
    enc, dec = model.encoder, model.decoder
    size = lambda layer: int(np.prod(layer.kernel.shape))
    # Its decoder upsamples by resize-convolution: each 3x3 convolution at the 4x as many upsampled pixels.
    positions = [14 * 14, 7 * 7, 1, 1, 1, 1, 14 * 14, 28 * 28, 28 * 28]
    kernels = [
        enc.convs[0],
        enc.convs[1],
        enc.trunk.layers[0],
        enc.head.loc,
        enc.head.log_scale,
        dec.project,
        dec.deconvs[0],
        dec.deconvs[1],
        dec.out,
    ]
    encoder, decoder = flop_count.layers(recipe, (28, 28, 1))
    assert [layer.macs for layer in encoder + decoder] == [p * size(k) for p, k in zip(positions, kernels)]


def test_xla_counts_the_paper_steps_flops_as_the_layer_shapes_do(registry, idx_dir, tmp_path):
    # benchmarks/step_cost.py reports XLA's FLOPs of each training step; here they are checked
    # against the layer shapes. vae_paper: the gated 784-300-300-40 MLPs at batch 100.
    # vampprior_paper adds the encoder's forward and backward on its 500 pseudo-inputs, the
    # first layer's input gradient included (the pseudo-inputs are learned). The count is
    # matmuls only; XLA's also has the gates, the sampling, the loss and Adam: a few percent.
    # The suite's 28x28 IDX files stand in for Fashion-MNIST: the FLOPs depend on the shapes alone.
    sys.path.append(str(REPO / "benchmarks"))
    import step_cost

    from zoo.core.assembly import assemble
    from zoo.core.recipes import train_config
    from zoo.training.step import initial_state
    from zoo.training.loop import training_input

    book = zoo.RecipeBook([zoo.default_registry_path()])
    xla = {}
    for variant in ("vae_paper", "vampprior_paper"):
        dataset = f"dataset={{name: mnist, validation_size: 50, cache_dir: {tmp_path}}}"
        recipe = book.resolve(variant, registry, [dataset])
        config, experiment = train_config(recipe), assemble(recipe, registry, data_dir=str(idx_dir))
        graphdef, optimizer, state = initial_state(experiment.model, config)
        batches = training_input(experiment, config, graphdef, optimizer, "memory", 0, 1)
        xla[variant] = step_cost.step_flops(batches, state, config.batch_size)
    recipe = book.resolve("vae_paper", registry)
    encoder, _ = flop_count.layers(recipe, (28, 28, 1))
    assert sum(layer.macs for layer in encoder) == 784 * 600 + 300 * 600 + 2 * 300 * 40
    vae = 100 * flop_count.training_flops(recipe, (28, 28, 1))
    pseudo_input_pass = 500 * 6 * sum(layer.macs for layer in encoder)
    assert 1.0 <= xla["vae_paper"] / vae <= 1.1
    assert 1.0 <= (xla["vampprior_paper"] - xla["vae_paper"]) / pseudo_input_pass <= 1.1
