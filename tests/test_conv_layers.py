"""plugins/layers/conv.py computes what flax's Conv and ConvTranspose compute, with the same
parameters: outputs and gradients against flax's layers and jax.lax, gradients against
finite differences, and the conv encoder and decoder against the same networks built of
flax's layers (so checkpoints and the perf benchmark's PyTorch reference stay valid)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import vae_zoo_plugins.base.conv as conv
from vae_zoo_plugins.layers.conv import (
    Conv,
    ConvTranspose,
    ResizeConv,
    conv_stride1,
    conv_stride2,
    depth_to_space,
    resize_conv,
    transposed_stride2,
    upsample_nearest,
)

DN = ("NHWC", "HWIO", "NHWC")
SHAPES = [(3, 7, 7, 5, 4), (2, 8, 6, 1, 1), (1, 1, 5, 2, 3)]  # (B, H, W, in, out): odd, even, one-pixel sizes
LAYERS = [(Conv, nnx.Conv, 2), (Conv, nnx.Conv, 1), (ConvTranspose, nnx.ConvTranspose, 2)]


def pair(zoo_class, flax_class, stride, cin, cout, **options):
    """A zoo layer and flax's with the same (random, nonzero-bias) parameters."""
    ours = zoo_class(cin, cout, (3, 3), strides=stride, padding="SAME", rngs=nnx.Rngs(0), **options)
    theirs = flax_class(cin, cout, (3, 3), strides=stride, padding="SAME", rngs=nnx.Rngs(0), **options)
    if ours.bias is not None:
        ours.bias[...] = jax.random.normal(jax.random.key(1), (cout,))
    nnx.update(theirs, nnx.state(ours))
    return ours, theirs


def lax_reference(zoo_class, stride, x, kernel, bias):
    if zoo_class is ConvTranspose:
        return jax.lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=DN) + bias
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=DN) + bias


def outputs_and_gradients(layer, x, weights):
    """The layer's output and the gradients (parameters, input) of a loss weighing every output differently."""
    graphdef, params = nnx.split(layer)
    loss = lambda p, x: jnp.sum(weights * nnx.merge(graphdef, p)(x) ** 2)  # noqa: E731
    return jax.jit(lambda p, x: (nnx.merge(graphdef, p)(x), jax.grad(loss, argnums=(0, 1))(p, x)))(params, x)


@pytest.mark.parametrize("zoo_class, flax_class, stride", LAYERS)
@pytest.mark.parametrize("b, h, w, cin, cout", SHAPES)
def test_same_outputs_and_gradients_as_flax_and_lax(zoo_class, flax_class, stride, b, h, w, cin, cout):
    ours, theirs = pair(zoo_class, flax_class, stride, cin, cout)
    x = jax.random.normal(jax.random.key(2), (b, h, w, cin))
    expected = jax.jit(lambda x: lax_reference(zoo_class, stride, x, ours.kernel[...], ours.bias[...]))(x)
    weights = jax.random.normal(jax.random.key(3), expected.shape)
    output, gradients = outputs_and_gradients(ours, x, weights)
    flax_output, flax_gradients = outputs_and_gradients(theirs, x, weights)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flax_output, expected, rtol=1e-5, atol=1e-5)
    for a, e in zip(jax.tree.leaves(gradients), jax.tree.leaves(flax_gradients)):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(e))))


@pytest.mark.parametrize("compute", [conv_stride2, conv_stride1, transposed_stride2])
def test_gradients_agree_with_finite_differences(compute):
    shape = (2, 3, 4, 2)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(4), shape, jnp.float64)
        kernel = jax.random.normal(jax.random.key(5), (3, 3, shape[-1], 3), jnp.float64)
        check_grads(jax.jit(compute), (x, kernel), order=1, modes=["fwd", "rev"], eps=1e-5, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("b, h, w, cin, cout", SHAPES)
def test_resize_conv_is_flax_conv_of_the_nearest_upsampled_input(b, h, w, cin, cout):
    ours, theirs = pair(ResizeConv, nnx.Conv, 1, cin, cout)
    x = jax.random.normal(jax.random.key(2), (b, h, w, cin))
    upsampled = jax.image.resize(x, (b, 2 * h, 2 * w, cin), "nearest")
    np.testing.assert_array_equal(upsample_nearest(x), upsampled)
    expected = jax.jit(lambda x: lax_reference(Conv, 1, x, ours.kernel[...], ours.bias[...]))(upsampled)
    weights = jax.random.normal(jax.random.key(3), expected.shape)
    output, gradients = outputs_and_gradients(ours, x, weights)
    flax_output, flax_gradients = outputs_and_gradients(theirs, upsampled, weights)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flax_output, expected, rtol=1e-5, atol=1e-5)
    # The parameters' gradients are flax's; the input's is the upsampled input's, summed over each 2x2 block.
    flax_gradients = (flax_gradients[0], flax_gradients[1].reshape(b, h, 2, w, 2, cin).sum((2, 4)))
    for a, e in zip(jax.tree.leaves(gradients), jax.tree.leaves(flax_gradients)):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(e))))


def test_resize_conv_gradients_agree_with_finite_differences():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(4), (2, 3, 4, 2), jnp.float64)
        kernel = jax.random.normal(jax.random.key(5), (3, 3, 2, 3), jnp.float64)
        check_grads(jax.jit(resize_conv), (x, kernel), order=1, modes=["fwd", "rev"], eps=1e-5, atol=1e-7, rtol=1e-7)


def test_resize_conv_of_other_configurations_is_flax_conv_of_the_upsampled_input():
    ours = ResizeConv(4, 6, (3, 3), strides=1, padding="VALID", rngs=nnx.Rngs(0))
    theirs = nnx.Conv(4, 6, (3, 3), strides=1, padding="VALID", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(6), (2, 5, 4, 4))
    np.testing.assert_array_equal(ours(x), theirs(upsample_nearest(x)))


def test_depth_to_space_is_pytorch_pixel_shuffle():
    # channel c * 4 + i * 2 + j of pixel (h, w) -> channel c of pixel (2h + i, 2w + j)
    x = jnp.arange(2 * 3 * 5 * 12.0).reshape(2, 3, 5, 12)
    y = np.asarray(depth_to_space(x))
    assert y.shape == (2, 6, 10, 3)
    for c, i, j, h, w in [(0, 0, 0, 0, 0), (2, 1, 0, 2, 4), (1, 1, 1, 1, 3)]:
        assert y[1, 2 * h + i, 2 * w + j, c] == x[1, h, w, c * 4 + i * 2 + j]


@pytest.mark.parametrize(
    "zoo_class, flax_class, options",
    [
        (Conv, nnx.Conv, {"kernel_size": (2, 2)}),
        (Conv, nnx.Conv, {"padding": "VALID"}),
        (Conv, nnx.Conv, {"strides": 3}),
        (Conv, nnx.Conv, {"feature_group_count": 2}),
        (ConvTranspose, nnx.ConvTranspose, {"strides": 1}),
        (ConvTranspose, nnx.ConvTranspose, {"transpose_kernel": True}),
        (ConvTranspose, nnx.ConvTranspose, {"kernel_dilation": 2}),
    ],
)
def test_other_configurations_are_flax_own(zoo_class, flax_class, options):
    options = {"kernel_size": (3, 3), "strides": 2, "padding": "SAME", **options}
    ours = zoo_class(4, 6, rngs=nnx.Rngs(0), **options)
    theirs = flax_class(4, 6, rngs=nnx.Rngs(0), **options)
    x = jax.random.normal(jax.random.key(6), (2, 9, 8, 4))
    np.testing.assert_array_equal(ours(x), theirs(x))


@pytest.mark.parametrize("zoo_class, flax_class, stride", LAYERS)
def test_parameters_are_flax_own(zoo_class, flax_class, stride):
    ours = zoo_class(3, 5, (3, 3), strides=stride, padding="SAME", rngs=nnx.Rngs(7))
    theirs = flax_class(3, 5, (3, 3), strides=stride, padding="SAME", rngs=nnx.Rngs(7))
    shapes = lambda layer: jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(layer)))  # noqa: E731
    assert shapes(ours) == shapes(theirs) == {"kernel": (3, 3, 3, 5), "bias": (5,)}
    for a, e in zip(jax.tree.leaves(nnx.state(ours)), jax.tree.leaves(nnx.state(theirs))):
        np.testing.assert_array_equal(a, e)  # the same initialisation from the same seed


class FlaxResizeConv(nnx.Conv):
    """flax's Conv of the nearest-upsampled input: what ResizeConv computes, the plain way."""

    def __call__(self, inputs):
        return super().__call__(upsample_nearest(inputs))


@pytest.mark.parametrize("upsample", conv.UPSAMPLING)
@pytest.mark.parametrize("image", [(12, 20, 3)])  # odd feature maps (3x5, 6x10) in the decoder
def test_conv_networks_compute_what_they_did_with_flax_layers(monkeypatch, image, upsample):
    """Encoder and decoder as in plugins/base/conv.py, built from the same seed once with the zoo's
    layers and once with flax's: the same parameters, the same outputs and gradients."""

    def build():
        encoder = conv.make_conv_encoder(image, None, 4, nnx.Rngs(0), channels=(8, 16), hidden=32)
        decoder = conv.make_conv_decoder(4, None, (*image, 2), nnx.Rngs(1), channels=(16, 8), upsample=upsample)
        return encoder, decoder

    ours = build()
    monkeypatch.setattr(conv, "Conv", nnx.Conv)
    monkeypatch.setattr(conv, "ConvTranspose", nnx.ConvTranspose)
    monkeypatch.setattr(conv, "ResizeConv", FlaxResizeConv)
    theirs = build()
    x = jax.random.uniform(jax.random.key(8), (3, *image))

    def loss_and_gradients(encoder, decoder):
        (encoder_def, encoder_params), (decoder_def, decoder_params) = nnx.split(encoder), nnx.split(decoder)

        def loss(params):
            q = nnx.merge(encoder_def, params[0])(x)
            return jnp.sum(q.mean() ** 2) + jnp.sum(jnp.tanh(nnx.merge(decoder_def, params[1])(q.mean())))

        return jax.jit(jax.value_and_grad(loss))((encoder_params, decoder_params))

    for a, e in zip(jax.tree.leaves(loss_and_gradients(*ours)), jax.tree.leaves(loss_and_gradients(*theirs))):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


def test_decoder_refuses_an_unknown_upsampling():
    with pytest.raises(ValueError, match="unknown upsampling 'bilinear'"):
        conv.make_conv_decoder(4, None, (8, 8, 1, 1), nnx.Rngs(0), upsample="bilinear")
