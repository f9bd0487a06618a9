"""flax's Conv and ConvTranspose with the same parameters and the same function, computed as
matmuls where XLA's CPU backend differentiates the convolution ops slowly.

`Conv` and `ConvTranspose` subclass nnx.Conv and nnx.ConvTranspose: their
parameters (`kernel` (3, 3, in, out) and `bias` (out,)), their initialisation
and so their checkpoints are flax's. For the layers of plugins/base/conv.py (3x3
kernels, SAME padding, channels-last 4-d input, no dilation, groups or mask)
they compute the same sums another way; any other configuration is flax's own
code. Measured on 2 CPU cores at batch 128 (perf_vae_conv's shapes, forward
and backward, ratios to flax's layers in alternating rounds in one process,
benchmarks/perf/conv_layers.py): transposed 64->64 on 7x7 about 0.09-0.1x,
64->32 on 14x14 about 0.18-0.2x, the stride-1 output convolution 32->1 about
0.25x, the stride-2 32->64 about 0.7x.

- Transposed, stride 2 ("sub-pixel"): output pixel (2p + a, 2q + b) of phase
  (a, b) sums input pixels (p - 1, p) x (q - 1, q) with 2x2 sub-kernels of the
  3x3 kernel (taps 0 and 2 for an even phase, 1 for an odd one), so one matmul
  of the 2x2 patches (4 in channels) to the four phases (4 out channels, zeros
  where a phase has no tap) followed by depth-to-space computes it.
- Stride 2: the nine taps as strided slices of the padded input, concatenated
  (im2col), and one matmul.
- Stride 1: one matmul of each pixel to its contribution under each of the
  nine taps (9 out channels), then nine shifted sums (col2im): cheap when the
  output has few channels, as the decoder's last layer has.
- Nearest-neighbour 2x upsampling then a 3x3 SAME convolution (`ResizeConv`,
  the resize-convolution of Odena et al. 2016, "Deconvolution and Checkerboard
  Artifacts"), in sub-pixel form: output pixel (2p + a, 2q + b) sees input
  rows (p - 1 + a, p + a) and columns (q - 1 + b, q + b), each with a sum of
  the 3x3 kernel's taps (rows 0 | 1 + 2 for an even phase, 0 + 1 | 2 for an
  odd one), so one matmul of the 2x2 patches of the input padded by one pixel
  to the four phases (no zero blocks), depth-to-space and a one-pixel crop
  compute it, without the 4x larger upsampled map: 16 of the 36
  multiplications per input pixel and channel pair that convolving the
  upsampled map takes (on (n + 1) x (m + 1) windows, 15-31% more at 14x14-7x7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_TAPS = {0: (0, 2), 1: (None, 1)}  # phase -> the kernel tap at window rows (p - 1, p); None: no tap


def _plain_3x3(layer, inputs, strides) -> bool:
    """Whether `layer` is a 3x3 SAME convolution with `strides` on NHWC input and flax's defaults otherwise."""
    return (
        inputs.ndim == 4
        and tuple(layer.kernel_size) == (3, 3)
        and _pair(layer.strides) == strides
        and layer.padding == "SAME"
        and _pair(layer.kernel_dilation) == (1, 1)
        and getattr(layer, "input_dilation", 1) in (1, (1, 1), None)
        and getattr(layer, "feature_group_count", 1) == 1
        and layer.mask is None
        and layer.precision is None
        and layer.preferred_element_type is None
        and getattr(layer, "conv_general_dilated", jax.lax.conv_general_dilated) is jax.lax.conv_general_dilated
    )


def _pair(value) -> tuple[int, int]:
    if value is None:
        return (1, 1)
    return (value, value) if isinstance(value, int) else tuple(value)


def _same_padding(length: int, stride: int) -> tuple[int, tuple[int, int]]:
    """(output length, (low, high) padding) of a 3-wide SAME window, as lax pads it."""
    out = -(-length // stride)
    total = max((out - 1) * stride + 3 - length, 0)
    return out, (total // 2, total - total // 2)


def phase_kernel(kernel: jax.Array) -> jax.Array:
    """(3, 3, in, out) -> (2 * 2 * in, 4 * out): rows (window row, window column, in), columns (phase row,
    phase column, out) of the stride-2 transposed convolution's sub-pixel form."""
    zero = jnp.zeros(kernel.shape[2:], kernel.dtype)
    rows = []
    for wi in range(2):
        for wj in range(2):
            phases = []
            for a in range(2):
                for b in range(2):
                    ti, tj = _TAPS[a][wi], _TAPS[b][wj]
                    phases.append(zero if ti is None or tj is None else kernel[ti, tj])
            rows.append(jnp.concatenate(phases, axis=-1))
    return jnp.concatenate(rows, axis=0)


def transposed_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """lax.conv_transpose(x, kernel, (2, 2), "SAME") (flax's, kernel not flipped) in sub-pixel form."""
    batch, n, m, cin = x.shape
    cout = kernel.shape[-1]
    padded = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    patches = jnp.concatenate([padded[:, i : i + n, j : j + m] for i in range(2) for j in range(2)], axis=-1)
    y = patches.reshape(-1, 4 * cin) @ phase_kernel(kernel)
    y = y.reshape(batch, n, m, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(batch, 2 * n, 2 * m, cout)


def conv_stride2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3 SAME stride-2 convolution as strided slices (im2col) and one matmul."""
    batch, height, width, cin = x.shape
    (oh, ph), (ow, pw) = _same_padding(height, 2), _same_padding(width, 2)
    padded = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    taps = [
        jax.lax.slice(padded, (0, i, j, 0), (batch, i + 2 * oh - 1, j + 2 * ow - 1, cin), (1, 2, 2, 1))
        for i in range(3)
        for j in range(3)
    ]
    y = jnp.concatenate(taps, axis=-1).reshape(-1, 9 * cin) @ kernel.reshape(9 * cin, -1)
    return y.reshape(batch, oh, ow, -1)


def conv_stride1(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3 SAME stride-1 convolution as one matmul to every tap's contribution and nine shifted sums."""
    batch, height, width, cin = x.shape
    cout = kernel.shape[-1]
    u = x.reshape(-1, cin) @ kernel.transpose(2, 0, 1, 3).reshape(cin, 9 * cout)
    u = jnp.pad(u.reshape(batch, height, width, 9, cout), ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
    y = u[:, :height, :width, 0]
    for tap in range(1, 9):
        i, j = divmod(tap, 3)
        y = y + u[:, i : i + height, j : j + width, tap]
    return y


_MERGED = {0: ((0,), (1, 2)), 1: ((0, 1), (2,))}  # phase -> the kernel taps summed at window rows (0, 1)


def resize_phase_kernel(kernel: jax.Array) -> jax.Array:
    """(3, 3, in, out) -> (2 * 2 * in, 4 * out): rows (window row, window column, in), columns (phase row,
    phase column, out), odd phase first, of the nearest-2x-upsampling convolution's sub-pixel form (summed taps)."""
    rows = []
    for wi in range(2):
        for wj in range(2):
            phases = []
            for a in (1, 0):
                for b in (1, 0):
                    taps = [kernel[ti, tj] for ti in _MERGED[a][wi] for tj in _MERGED[b][wj]]
                    phases.append(sum(taps[1:], taps[0]))
            rows.append(jnp.concatenate(phases, axis=-1))
    return jnp.concatenate(rows, axis=0)


def upsample_nearest(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, 2H, 2W, C), each pixel repeated in a 2x2 block."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def resize_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3 SAME stride-1 convolution of upsample_nearest(x), in sub-pixel form (module docstring).

    The 2x2 window at padded position r gives output row 2r of the even phase and 2r - 1 of the odd one;
    with the odd phase first, depth-to-space of the (n + 1) x (m + 1) windows is the output shifted by
    one pixel, so a slice, not a gather, puts each phase in place."""
    batch, n, m, cin = x.shape
    cout = kernel.shape[-1]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([padded[:, i : i + n + 1, j : j + m + 1] for i in range(2) for j in range(2)], axis=-1)
    y = (patches.reshape(-1, 4 * cin) @ resize_phase_kernel(kernel)).reshape(batch, n + 1, m + 1, 2, 2, cout)
    y = y.transpose(0, 1, 3, 2, 4, 5).reshape(batch, 2 * n + 2, 2 * m + 2, cout)
    return y[:, 1 : 2 * n + 1, 1 : 2 * m + 1]


def _with_bias(layer, inputs, compute):
    """`compute(inputs, kernel)` plus the bias, in the layer's dtype, as flax promotes them."""
    bias = layer.bias[...] if layer.bias is not None else None
    inputs, kernel, bias = layer.promote_dtype((inputs, layer.kernel[...], bias), dtype=layer.dtype)
    y = compute(inputs, kernel)
    return y if bias is None else y + bias


class Conv(nnx.Conv):
    """nnx.Conv; 3x3 SAME convolutions of stride 1 or 2 computed as matmuls (module docstring)."""

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        if out_sharding is None and _plain_3x3(self, inputs, (2, 2)):
            return _with_bias(self, inputs, conv_stride2)
        if out_sharding is None and _plain_3x3(self, inputs, (1, 1)):
            return _with_bias(self, inputs, conv_stride1)
        return super().__call__(inputs, out_sharding)


class ConvTranspose(nnx.ConvTranspose):
    """nnx.ConvTranspose; 3x3 SAME stride-2 ones computed in sub-pixel form (module docstring)."""

    def __call__(self, inputs: jax.Array) -> jax.Array:
        if _plain_3x3(self, inputs, (2, 2)) and not self.transpose_kernel:
            return _with_bias(self, inputs, transposed_stride2)
        return super().__call__(inputs)


class ResizeConv(nnx.Conv):
    """nnx.Conv applied to its input upsampled 2x by nearest neighbour: flax's Conv's parameters,
    `conv(upsample_nearest(x))`; a 3x3 SAME stride-1 one computed in sub-pixel form (module docstring)."""

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        if out_sharding is None and _plain_3x3(self, inputs, (1, 1)):
            return _with_bias(self, inputs, resize_conv)
        return super().__call__(upsample_nearest(inputs), out_sharding)


def depth_to_space(x: jax.Array, factor: int = 2) -> jax.Array:
    """(B, H, W, C * f * f) -> (B, f H, f W, C), PyTorch's pixel_shuffle order: channel c * f * f + i * f + j
    goes to pixel (f h + i, f w + j), channel c."""
    batch, height, width, channels = x.shape
    out = channels // (factor * factor)
    x = x.reshape(batch, height, width, out, factor, factor).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(batch, factor * height, factor * width, out)
