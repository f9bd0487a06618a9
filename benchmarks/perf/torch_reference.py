"""Plain PyTorch versions of the perf benchmark's four zoo architectures, written for the benchmark.

Same layer sizes, activations, data layout (images NHWC, flattened in that
order) and loss as the zoo recipes in recipes.yaml: -ELBO with a Bernoulli
log-likelihood from logits and the closed-form Gaussian KL to N(0, I), mean
over the batch; Adam. The initialisation is torch's own. `copy_zoo_params`
loads a zoo model's weights so tests/test_perf_reference.py can check that
both compute the same function.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of XLA's SAME convolution along one axis (the extra pixel goes after)."""
    total = max((-(-length // stride) - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


class GaussianHead(nn.Module):
    """Features -> (loc, scale) of a diagonal Gaussian, scale = exp(linear)."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(in_features, latent_dim)
        self.log_scale = nn.Linear(in_features, latent_dim)

    def forward(self, h):
        return self.loc(h), torch.exp(self.log_scale(h))


def dense_stack(sizes: Sequence[int]) -> nn.ModuleList:
    """Linear layers between consecutive sizes."""
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def with_condition(h, c):
    """Flatten each row of h and append the condition, if any."""
    h = h.reshape(h.shape[0], -1)
    return h if c is None else torch.cat([h, c], dim=-1)


class MLPEncoder(nn.Module):
    """q(z | x, c): flatten x, append c, dense layers, Gaussian head."""

    def __init__(self, in_features, condition_size, latent_dim, hidden, activation):
        super().__init__()
        self.trunk = dense_stack([in_features + condition_size, *hidden])
        self.head = GaussianHead(hidden[-1], latent_dim)
        self.act = ACTIVATIONS[activation]

    def forward(self, x, c=None):
        h = with_condition(x, c)
        for layer in self.trunk:
            h = self.act(layer(h))
        return self.head(h)


class MLPDecoder(nn.Module):
    """(z, c) -> Bernoulli logits, one per pixel, flat."""

    def __init__(self, latent_dim, condition_size, out_features, hidden, activation):
        super().__init__()
        self.trunk = dense_stack([latent_dim + condition_size, *hidden])
        self.out = nn.Linear(hidden[-1], out_features)
        self.act = ACTIVATIONS[activation]

    def forward(self, z, c=None):
        h = with_condition(z, c)
        for layer in self.trunk:
            h = self.act(layer(h))
        return self.out(h)


class ConvEncoder(nn.Module):
    """q(z | x, c): stride-2 SAME 3x3 convolutions, one dense layer, Gaussian head."""

    def __init__(self, x_shape, condition_size, latent_dim, channels, hidden, activation):
        super().__init__()
        height, width, in_channels = x_shape
        sizes = [in_channels, *channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2) for a, b in zip(sizes[:-1], sizes[1:]))
        self.pads = []
        for _ in channels:
            (top, bottom), (left, right) = same_padding(height, 3, 2), same_padding(width, 3, 2)
            self.pads.append((left, right, top, bottom))
            height, width = -(-height // 2), -(-width // 2)
        self.trunk = dense_stack([height * width * sizes[-1] + condition_size, hidden])
        self.head = GaussianHead(hidden, latent_dim)
        self.act = ACTIVATIONS[activation]

    def forward(self, x, c=None):
        h = x.permute(0, 3, 1, 2)
        for conv, pad in zip(self.convs, self.pads):
            h = self.act(conv(F.pad(h, pad)))
        # Flatten in height-width-channel order, as the zoo does, so weights carry over unchanged.
        h = self.act(self.trunk[0](with_condition(h.permute(0, 2, 3, 1), c)))
        return self.head(h)


class ConvDecoder(nn.Module):
    """(z, c) -> dense to a small map, 2x upsampling layers, a 3x3 convolution to logits. The upsampling
    (the zoo decoder's `upsample`): stride-2 transposed convolutions, nearest-neighbour resizing then a 3x3
    convolution, or a 3x3 convolution to 4x the channels then pixel shuffle."""

    def __init__(self, latent_dim, condition_size, x_shape, channels, activation, upsample="transpose"):
        super().__init__()
        height, width, out_channels = x_shape
        factor = 2 ** len(channels)
        self.start = (height // factor, width // factor, channels[0])
        self.project = nn.Linear(latent_dim + condition_size, math.prod(self.start))
        sizes = [channels[0], *channels]
        pairs = list(zip(sizes[:-1], sizes[1:]))
        if upsample == "transpose":
            self.deconvs = nn.ModuleList(nn.ConvTranspose2d(a, b, 3, stride=2) for a, b in pairs)
        elif upsample == "resize":
            self.deconvs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in pairs)
        elif upsample == "pixel_shuffle":
            self.deconvs = nn.ModuleList(nn.Conv2d(a, 4 * b, 3, padding=1) for a, b in pairs)
        else:
            raise ValueError(f"the torch reference has no upsampling {upsample!r}")
        self.upsample = upsample
        self.out = nn.Conv2d(sizes[-1], out_channels, 3, padding=1)
        self.act = ACTIVATIONS[activation]

    def forward(self, z, c=None):
        h = self.act(self.project(with_condition(z, c))).reshape(z.shape[0], *self.start).permute(0, 3, 1, 2)
        for deconv in self.deconvs:
            if self.upsample == "transpose":
                height, width = 2 * h.shape[-2], 2 * h.shape[-1]
                # XLA's SAME transposed convolution pads (2, 1); torch pads (2, 2): drop the extra last row and column.
                h = deconv(h)[..., :height, :width]
            elif self.upsample == "resize":
                h = deconv(F.interpolate(h, scale_factor=2, mode="nearest"))
            else:
                h = F.pixel_shuffle(deconv(h), 2)
            h = self.act(h)
        return self.out(h).permute(0, 2, 3, 1).reshape(z.shape[0], -1)


class ReferenceVAE(nn.Module):
    """A VAE or label-concatenating CVAE with N(0, I) prior and Bernoulli likelihood."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, num_classes: Optional[int]):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.latent_dim, self.num_classes = latent_dim, num_classes

    def condition(self, labels):
        """The one-hot label for a CVAE, None for a VAE."""
        return None if self.num_classes is None else F.one_hot(labels.long(), self.num_classes).float()


def build_reference(recipe: Mapping, x_shape: Sequence[int], num_classes: Optional[int] = None) -> ReferenceVAE:
    """The torch network of a resolved zoo recipe (mlp or conv, N(0, I), Bernoulli, ELBO)."""
    expected = {"prior": "standard_normal", "likelihood": "bernoulli", "objective": "elbo"}
    for kind, name in expected.items():
        if recipe[kind]["name"] != name:
            raise ValueError(f"the torch reference supports {kind} {name!r} only, not {recipe[kind]['name']!r}")
    condition = recipe.get("condition") or {}
    if condition and condition.get("name") != "onehot_label":
        raise ValueError(f"the torch reference supports the onehot_label condition only, not {condition.get('name')!r}")
    classes = num_classes if condition else None
    extra, latent = classes or 0, recipe["latent_dim"]
    enc, dec = recipe["encoder"], recipe["decoder"]
    pixels = math.prod(x_shape)
    if enc["name"] == "mlp" and dec["name"] == "mlp":
        encoder = MLPEncoder(pixels, extra, latent, enc["hidden"], enc["activation"])
        decoder = MLPDecoder(latent, extra, pixels, dec["hidden"], dec["activation"])
    elif enc["name"] == "conv" and dec["name"] == "conv":
        encoder = ConvEncoder(tuple(x_shape), extra, latent, enc["channels"], enc["hidden"], enc["activation"])
        upsample = dec.get("upsample", "transpose")
        decoder = ConvDecoder(latent, extra, tuple(x_shape), dec["channels"], dec["activation"], upsample)
    else:
        raise ValueError(
            f"the torch reference supports mlp or conv encoder and decoder, not {enc['name']!r}/{dec['name']!r}"
        )
    return ReferenceVAE(encoder, decoder, latent, classes)


def bernoulli_log_prob(logits, x):
    """Sum over pixels of log Bernoulli(x | sigmoid(logits))."""
    return -F.binary_cross_entropy_with_logits(logits, x.reshape(logits.shape), reduction="none").sum(-1)


def negative_elbo(model: ReferenceVAE, x, c, eps=None):
    """Mean over the batch of -(log p(x | z, c) - KL(q(z | x, c) || N(0, I))) at z = loc + scale * eps."""
    loc, scale = model.encoder(x, c)
    eps = torch.randn_like(loc) if eps is None else eps
    logits = model.decoder(loc + scale * eps, c)
    kl = 0.5 * (loc.square() + scale.square() - 1.0).sum(-1) - torch.log(scale).sum(-1)
    return (kl - bernoulli_log_prob(logits, x)).mean()


def log_importance_weights(model: ReferenceVAE, x, c, eps):
    """log p(x, z_k | c) - log q(z_k | x, c) at z_k = loc + scale * eps_k; eps (K, B, D) -> (K, B)."""
    loc, scale = model.encoder(x, c)
    z = loc + scale * eps
    samples, batch = eps.shape[:2]
    log_prior = (-0.5 * z.square() - HALF_LOG_TWO_PI).sum(-1)
    log_q = (-0.5 * eps.square() - torch.log(scale) - HALF_LOG_TWO_PI).sum(-1)
    repeat = lambda t: None if t is None else t.expand(samples, *t.shape).reshape(samples * batch, *t.shape[1:])
    logits = model.decoder(z.reshape(samples * batch, -1), repeat(c))
    return bernoulli_log_prob(logits, repeat(x)).reshape(samples, batch) + log_prior - log_q


def log_likelihood(
    model: ReferenceVAE,
    x,
    c,
    num_samples: int = 5000,
    chunk_size: int = 250,
    noise: Optional[Callable[[int, tuple], torch.Tensor]] = None,
):
    """Importance-sampled log p(x | c) per example, K samples drawn `chunk_size` at a time.

    `noise(chunk_index, shape)` gives each chunk's standard-normal eps (default torch.randn).
    """
    chunk_size = min(chunk_size, num_samples)
    chunks = []
    with torch.no_grad():
        for index in range(math.ceil(num_samples / chunk_size)):
            shape = (chunk_size, x.shape[0], model.latent_dim)
            eps = torch.randn(shape) if noise is None else noise(index, shape)
            chunks.append(log_importance_weights(model, x, c, eps))
        log_w = torch.cat(chunks)[:num_samples]
        return torch.logsumexp(log_w, dim=0) - math.log(num_samples)


def copy_zoo_params(reference: ReferenceVAE, zoo_model) -> None:
    """Load a zoo LatentVariableModel's weights (flax layouts) into the torch reference."""
    pairs = [
        (reference.encoder.head.loc, zoo_model.encoder.head.loc),
        (reference.encoder.head.log_scale, zoo_model.encoder.head.log_scale),
    ]
    pairs += list(zip(reference.encoder.trunk, zoo_model.encoder.trunk.layers))
    if isinstance(reference.decoder, MLPDecoder):
        pairs += list(zip(reference.decoder.trunk, zoo_model.decoder.trunk.layers)) + [
            (reference.decoder.out, zoo_model.decoder.out)
        ]
    else:
        pairs += [
            (reference.decoder.project, zoo_model.decoder.project),
            (reference.decoder.out, zoo_model.decoder.out),
        ]
        pairs += list(zip(reference.decoder.deconvs, zoo_model.decoder.deconvs))
    if isinstance(reference.encoder, ConvEncoder):
        pairs += list(zip(reference.encoder.convs, zoo_model.encoder.convs))
    with torch.no_grad():
        for torch_layer, zoo_layer in pairs:
            kernel = np.asarray(zoo_layer.kernel[...])
            if isinstance(torch_layer, nn.Linear):
                weight = kernel.T  # flax (in, out) -> torch (out, in)
            elif isinstance(torch_layer, nn.ConvTranspose2d):  # the zoo's ResizeConv and pixel shuffle are Conv2d
                weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)  # flax correlates the dilated input; torch flips
            else:
                weight = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            torch_layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            torch_layer.bias.copy_(torch.from_numpy(np.array(zoo_layer.bias[...])))


def make_train_step(model: ReferenceVAE, learning_rate: float, compile: bool = False):
    """`(x, c) -> loss` doing one Adam step on -ELBO; with `compile`, the loss goes through torch.compile."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = torch.compile(negative_elbo) if compile else negative_elbo

    def train_step(x, c):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, c)
        loss.backward()
        optimizer.step()
        return loss

    return train_step
