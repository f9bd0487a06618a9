"""Convolutional encoder and decoder for images of shape (height, width, channels)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Sequence

import jax
from flax import nnx

import zoo
from zoo import AtLeast
from vae_zoo_plugins.layers.conv import Conv, ConvTranspose, ResizeConv, depth_to_space
from vae_zoo_plugins.layers.dense import (
    ACTIVATIONS,
    MLP,
    DiagonalGaussianHead,
    activation_fn,
    check_sizes,
    flatten_with,
    size,
)


# How the decoder doubles its feature map's height and width at each of its `channels`:
# "transpose": a 3x3 stride-2 transposed convolution (the default; the zoo's conv models were trained with it);
# "resize": nearest-neighbour upsampling, then a 3x3 convolution (Odena et al. 2016: no checkerboard
# artifacts), which plugins/layers/conv.py computes in sub-pixel form at the cost of the transposed one;
# "pixel_shuffle": a 3x3 convolution to 4x the channels, then depth-to-space (Shi et al. 2016).
Upsampling = Literal["transpose", "resize", "pixel_shuffle"]
UPSAMPLING = ("transpose", "resize", "pixel_shuffle")


def upsampling_layer(upsample: str, in_channels: int, out_channels: int, rngs: nnx.Rngs) -> nnx.Module:
    """One of the decoder's 2x upsampling layers (3x3 kernels)."""
    if upsample == "transpose":
        return ConvTranspose(in_channels, out_channels, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
    if upsample == "resize":
        return ResizeConv(in_channels, out_channels, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    if upsample == "pixel_shuffle":
        return Conv(in_channels, 4 * out_channels, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    raise ValueError(f"upsample: unknown upsampling {upsample!r}; known: {', '.join(UPSAMPLING)}")


def _downsampled(length: int, times: int) -> int:
    for _ in range(times):
        length = -(-length // 2)  # a stride-2 SAME convolution rounds up
    return length


class ConvEncoder(nnx.Module):
    """q(z | x, c): stride-2 convolutions, then c is appended to the flat features."""

    def __init__(self, x_shape, c_shape, latent_dim, channels, hidden, activation, *, rngs):
        if len(x_shape) != 3:
            raise ValueError(f"needs images of shape (height, width, channels); the data has shape {tuple(x_shape)}")
        height, width, in_channels = x_shape
        check_sizes("channels", channels, allow_empty=False)
        check_sizes("hidden", (hidden,), allow_empty=False)
        activation_fn(activation)
        self.activation = activation
        sizes = [in_channels, *channels]
        self.convs = nnx.List(
            [
                Conv(a, b, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
                for a, b in zip(sizes[:-1], sizes[1:])
            ]
        )
        flat = _downsampled(height, len(channels)) * _downsampled(width, len(channels)) * sizes[-1]
        self.trunk = MLP(flat + size(c_shape), (hidden,), activation, rngs=rngs)
        self.head = DiagonalGaussianHead(hidden, latent_dim, rngs=rngs)

    def __call__(self, x: jax.Array, c: Optional[jax.Array] = None):
        act = ACTIVATIONS[self.activation]
        h = x
        for conv in self.convs:
            h = act(conv(h))
        return self.head(self.trunk(flatten_with(h, c)))


class ConvDecoder(nnx.Module):
    """(z, c) -> a dense layer to a small feature map, stride-2 transposed convolutions up to at
    least (height, width), the centre cropped to exactly (height, width), and a last convolution
    to channels x parameters. A side that halves evenly `len(channels)` times (28 with two layers,
    32, 64) needs no crop; any other (48x40 with four layers, 8x10) starts from the rounded-up map."""

    def __init__(self, latent_dim, c_shape, output_shape, channels, activation, *, rngs, upsample="transpose"):
        if len(output_shape) != 4:
            raise ValueError(
                f"needs images of shape (height, width, channels); the data has shape {tuple(output_shape[:-1])}"
            )
        height, width, out_channels, params_per_dim = output_shape
        check_sizes("channels", channels, allow_empty=False)
        activation_fn(activation)
        self.activation = activation
        self.output_shape = tuple(output_shape)
        self.start = (_downsampled(height, len(channels)), _downsampled(width, len(channels)), channels[0])
        factor = 2 ** len(channels)
        # The crop's top-left corner: the upsampled map is centred on the image.
        self.offset = ((self.start[0] * factor - height) // 2, (self.start[1] * factor - width) // 2)
        self.project = nnx.Linear(latent_dim + size(c_shape), self.start[0] * self.start[1] * channels[0], rngs=rngs)
        sizes = [channels[0], *channels]
        self.upsample = upsample
        self.deconvs = nnx.List([upsampling_layer(upsample, a, b, rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = Conv(sizes[-1], out_channels * params_per_dim, kernel_size=(3, 3), padding="SAME", rngs=rngs)

    def __call__(self, z: jax.Array, c: Optional[jax.Array] = None) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        h = act(self.project(flatten_with(z, c))).reshape((z.shape[0],) + self.start)
        for deconv in self.deconvs:
            h = deconv(h)
            h = act(depth_to_space(h) if self.upsample == "pixel_shuffle" else h)
        height, width = self.output_shape[:2]
        top, left = self.offset
        h = h[:, top : top + height, left : left + width]
        return self.out(h).reshape((z.shape[0],) + self.output_shape)


def make_conv_encoder(
    x_shape,
    c_shape,
    latent_dim,
    rngs,
    channels: Sequence[int] = (32, 64),
    hidden: Annotated[int, AtLeast(1)] = 256,
    activation: str = "relu",
) -> ConvEncoder:
    """Convolutional encoder q(z | x, c) for HxWxC images.

    >>> enc = make_conv_encoder((8, 8, 1), None, 4, nnx.Rngs(0))  # doctest: +SKIP
    """
    return ConvEncoder(tuple(x_shape), c_shape, latent_dim, tuple(channels), hidden, activation, rngs=rngs)


def make_conv_decoder(
    latent_dim,
    c_shape,
    output_shape,
    rngs,
    channels: Sequence[int] = (64, 32),
    activation: str = "relu",
    upsample: Upsampling = "transpose",
) -> ConvDecoder:
    """Convolutional decoder (z, c) -> likelihood parameters for HxWxC images; `upsample` doubles the
    feature map by a stride-2 transposed convolution, nearest-neighbour resizing then a convolution,
    or a convolution then pixel shuffle (UPSAMPLING).

    >>> dec = make_conv_decoder(4, None, (8, 8, 1, 1), nnx.Rngs(0))  # doctest: +SKIP
    """
    return ConvDecoder(
        latent_dim, c_shape, tuple(output_shape), tuple(channels), activation, rngs=rngs, upsample=upsample
    )


@zoo.hookimpl
def register_components(register):
    """Convolutional encoder and decoder."""
    register("encoder", "conv", make_conv_encoder)
    register("decoder", "conv", make_conv_decoder)
