"""FLOPs per image of the perf benchmark's architectures, counted from the layer shapes.

Only the dense layers and convolutions count (activations, the loss and Adam
are a few percent at most). A multiply-accumulate is 2 FLOPs. Training costs
the forward pass, the weight gradient and the input gradient of every layer
(2 + 2 + 2 FLOPs per multiply-accumulate), less the input gradients nobody
needs: those of the data (the encoder's first layer) and of the condition
columns of the decoder's first layer. A SAME convolution counts its whole
kernel at every output position; a stride-2 transposed convolution counts
only the products of real input pixels (kernel x input positions), not the
zeros a dilated implementation multiplies.

The seed VAE (784-512-512, latent 256, 256-512-512-784) costs 9.52 MFLOP per
training image and 1.59 MFLOP per importance sample.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Layer:
    """One dense or convolution layer: multiply-accumulates per image, forward and input gradient."""

    name: str
    macs: int
    input_grad_macs: int


def dense(name: str, in_features: int, out_features: int, grad_features: Optional[int] = None) -> Layer:
    """A dense layer; `grad_features` of its inputs need a gradient (all of them by default)."""
    grad = in_features if grad_features is None else grad_features
    return Layer(name, in_features * out_features, grad * out_features)


def conv(
    name: str, positions: int, in_channels: int, out_channels: int, kernel: int = 3, on_data: bool = False
) -> Layer:
    """A convolution evaluated at `positions` places (output pixels, or input pixels when transposed)."""
    macs = positions * kernel * kernel * in_channels * out_channels
    return Layer(name, macs, 0 if on_data else macs)


def mlp_layers(recipe: Mapping, pixels: int, condition_size: int) -> tuple[list[Layer], list[Layer]]:
    """(encoder, decoder) layers of an MLP recipe; a gated hidden layer, (W h + b) * sigmoid(V h + c),
    is two dense layers of the same shape (its elementwise gate is not counted)."""
    latent, enc, dec = recipe["latent_dim"], recipe["encoder"]["hidden"], recipe["decoder"]["hidden"]
    enc_gated, dec_gated = recipe["encoder"].get("gated", False), recipe["decoder"].get("gated", False)
    sizes = [pixels + condition_size, *enc]
    encoder = [
        layer
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
        for layer in hidden_layers(f"encoder.{i}", a, b, 0 if i == 0 else None, enc_gated)
    ]
    encoder += [dense("encoder.loc", sizes[-1], latent), dense("encoder.log_scale", sizes[-1], latent)]
    sizes = [latent + condition_size, *dec]
    decoder = [
        layer
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
        for layer in hidden_layers(f"decoder.{i}", a, b, latent if i == 0 else None, dec_gated)
    ]
    decoder.append(dense(f"decoder.{len(dec)}", sizes[-1], pixels, latent if not dec else None))
    return encoder, decoder


def hidden_layers(
    name: str, in_features: int, out_features: int, grad_features: Optional[int], gated: bool
) -> list[Layer]:
    """One hidden layer of an MLP: a dense layer, or a gated layer's two (value and gate)."""
    if not gated:
        return [dense(name, in_features, out_features, grad_features)]
    return [
        dense(f"{name}.value", in_features, out_features, grad_features),
        dense(f"{name}.gate", in_features, out_features, grad_features),
    ]


def conv_layers(recipe: Mapping, x_shape: Sequence[int], condition_size: int) -> tuple[list[Layer], list[Layer]]:
    """(encoder, decoder) layers of a conv recipe (stride-2 3x3 convolutions, SAME). The decoder's upsampling
    as its definition computes it: a transposed convolution at the input pixels, a resize-convolution at
    the 4x as many upsampled pixels (plugins/layers/conv.py computes it with 16 of those 36 multiplications
    per input pixel and channel pair), a pixel-shuffle convolution at the input pixels to 4x the channels."""
    height, width, channels = x_shape
    latent, enc, dec = recipe["latent_dim"], recipe["encoder"], recipe["decoder"]
    encoder, sizes = [], [channels, *enc["channels"]]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        height, width = -(-height // 2), -(-width // 2)
        encoder.append(conv(f"encoder.conv{i}", height * width, a, b, on_data=i == 0))
    encoder.append(
        dense("encoder.dense", height * width * sizes[-1] + condition_size, enc["hidden"], height * width * sizes[-1])
    )
    encoder += [dense("encoder.loc", enc["hidden"], latent), dense("encoder.log_scale", enc["hidden"], latent)]
    height, width, _ = x_shape
    factor = 2 ** len(dec["channels"])
    height, width = height // factor, width // factor
    decoder = [dense("decoder.project", latent + condition_size, height * width * dec["channels"][0], latent)]
    sizes = [dec["channels"][0], *dec["channels"]]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        upsample = dec.get("upsample", "transpose")
        positions, outputs = {"resize": (4 * height * width, b), "pixel_shuffle": (height * width, 4 * b)}.get(
            upsample, (height * width, b)
        )
        decoder.append(conv(f"decoder.deconv{i}", positions, a, outputs))
        height, width = 2 * height, 2 * width
    decoder.append(conv("decoder.out", height * width, sizes[-1], channels))
    return encoder, decoder


def layers(recipe: Mapping, x_shape: Sequence[int], num_classes: int = 10) -> tuple[list[Layer], list[Layer]]:
    """(encoder, decoder) layers of a resolved recipe with mlp or conv networks."""
    condition_size = num_classes if recipe.get("condition") else 0
    kind = recipe["encoder"]["name"]
    if kind == "mlp":
        return mlp_layers(recipe, math.prod(x_shape), condition_size)
    if kind == "conv":
        return conv_layers(recipe, x_shape, condition_size)
    raise ValueError(f"cannot count FLOPs of encoder {kind!r}; known: mlp, conv")


def training_flops(recipe: Mapping, x_shape: Sequence[int], num_classes: int = 10) -> int:
    """FLOPs of one training image: forward, weight gradient and the needed input gradients."""
    encoder, decoder = layers(recipe, x_shape, num_classes)
    return sum(4 * layer.macs + 2 * layer.input_grad_macs for layer in encoder + decoder)


def importance_sampling_flops(recipe: Mapping, x_shape: Sequence[int], num_samples: int, num_classes: int = 10) -> int:
    """FLOPs of the importance-sampled log-likelihood of one image: the encoder once, the decoder K times."""
    encoder, decoder = layers(recipe, x_shape, num_classes)
    return 2 * sum(layer.macs for layer in encoder) + 2 * num_samples * sum(layer.macs for layer in decoder)
