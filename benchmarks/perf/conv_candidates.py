"""Candidate formulations of the conv VAE's convolutions, timed against the lax ops flax uses (forward and backward,
batch 128, perf_vae_conv's shapes) in alternating rounds in one process; the exploration behind plugins/layers/conv.py.

    .venv/bin/python benchmarks/perf/conv_candidates.py [ROUNDS] [LAYER-NAME-PART ...]
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DN = ("NHWC", "HWIO", "NHWC")


# ---------- transposed conv, 3x3, stride 2, SAME (flax: lax.conv_transpose, transpose_kernel=False)
def tconv_ref(x, k, b):
    return lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=DN) + b


def _d2s(y, cout):  # (B, n, m, 2*2*cout) phases (a, b) -> (B, 2n, 2m, cout)
    B, n, m, _ = y.shape
    return y.reshape(B, n, m, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5).reshape(B, 2 * n, 2 * m, cout)


def _phase_kernel(k):
    """(2, 2, Cin, 4*Cout): window rows/cols (x[p-1], x[p]); phases (even,even),(even,odd),(odd,even),(odd,odd)."""
    cin, cout = k.shape[2:]
    z = jnp.zeros((cin, cout), k.dtype)
    # tap index per (phase, window position): even phase: window 0 -> tap 0, window 1 -> tap 2; odd: window 0 -> none, window 1 -> tap 1
    taps = {0: (0, 2), 1: (None, 1)}
    rows = []
    for wi in range(2):
        cols = []
        for wj in range(2):
            phases = []
            for a in range(2):
                for bb in range(2):
                    ti, tj = taps[a][wi], taps[bb][wj]
                    phases.append(z if ti is None or tj is None else k[ti, tj])
            cols.append(jnp.concatenate(phases, axis=-1))
        rows.append(jnp.stack(cols))
    return jnp.stack(rows)  # (2, 2, cin, 4cout)


def tconv_subpixel_conv(x, k, b):
    cout = k.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    y = lax.conv_general_dilated(xp, _phase_kernel(k), (1, 1), "VALID", dimension_numbers=DN)
    return _d2s(y, cout) + b


def tconv_subpixel_matmul(x, k, b):
    B, n, m, cin = x.shape
    cout = k.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    patches = jnp.concatenate([xp[:, i : i + n, j : j + m] for i in range(2) for j in range(2)], axis=-1)
    y = patches.reshape(-1, 4 * cin) @ _phase_kernel(k).reshape(4 * cin, 4 * cout)
    return _d2s(y.reshape(B, n, m, 4 * cout), cout) + b


def tconv_phases(x, k, b):
    """Four exact sub-convolutions (9 taps, no zeros), as slices and matmuls."""
    B, n, m, cin = x.shape
    cout = k.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    prev_r = xp[:, :n, 1:]  # x[p-1, q]
    prev_c = xp[:, 1:, :m]  # x[p, q-1]
    prev_rc = xp[:, :n, :m]  # x[p-1, q-1]
    mm = lambda parts, taps: jnp.concatenate(parts, -1) @ jnp.concatenate([k[i, j] for i, j in taps], 0)
    ee = mm([prev_rc, prev_r, prev_c, x], [(0, 0), (0, 2), (2, 0), (2, 2)])
    eo = mm([prev_r, x], [(0, 1), (2, 1)])
    oe = mm([prev_c, x], [(1, 0), (1, 2)])
    oo = x @ k[1, 1]
    y = jnp.stack([ee, eo, oe, oo], axis=3)  # (B, n, m, 4, cout)
    return _d2s(y.reshape(B, n, m, 4 * cout), cout) + b


def tconv_patches(x, k, b):
    B, n, m, cin = x.shape
    cout = k.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    p = lax.conv_general_dilated_patches(xp, (2, 2), (1, 1), "VALID", dimension_numbers=DN)  # (B,n,m,cin*4) c-major
    kk = _phase_kernel(k).transpose(2, 0, 1, 3).reshape(4 * cin, 4 * cout)
    y = p.reshape(-1, 4 * cin) @ kk
    return _d2s(y.reshape(B, n, m, 4 * cout), cout) + b


# ---------- conv 3x3, stride 2, SAME (flax: lax.conv_general_dilated)
def conv_ref(x, k, b, s=2):
    return lax.conv_general_dilated(x, k, (s, s), "SAME", dimension_numbers=DN) + b


def _same_pads(n, s, kk=3):
    out = -(-n // s)
    total = max((out - 1) * s + kk - n, 0)
    return out, (total // 2, total - total // 2)


def conv_slices(x, k, b, s=2):
    B, H, W, cin = x.shape
    cout = k.shape[-1]
    oh, ph = _same_pads(H, s)
    ow, pw = _same_pads(W, s)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    parts = [
        lax.slice(xp, (0, i, j, 0), (B, i + s * (oh - 1) + 1, j + s * (ow - 1) + 1, cin), (1, s, s, 1))
        for i in range(3)
        for j in range(3)
    ]
    y = jnp.concatenate(parts, -1).reshape(-1, 9 * cin) @ k.reshape(9 * cin, cout)
    return y.reshape(B, oh, ow, cout) + b


def conv_s2d(x, k, b):
    """Stride 2: space-to-depth of the padded input, then a 2x2 stride-1 conv with the 3x3 kernel embedded in 4x4."""
    B, H, W, cin = x.shape
    cout = k.shape[-1]
    oh, ph = _same_pads(H, 2)
    ow, pw = _same_pads(W, 2)
    # padded length must be 2*(o+1)
    xp = jnp.pad(x, ((0, 0), (ph[0], 2 * oh + 2 - H - ph[0]), (pw[0], 2 * ow + 2 - W - pw[0]), (0, 0)))
    s = xp.reshape(B, oh + 1, 2, ow + 1, 2, cin).transpose(0, 1, 3, 2, 4, 5).reshape(B, oh + 1, ow + 1, 4 * cin)
    k4 = jnp.pad(k, ((0, 1), (0, 1), (0, 0), (0, 0)))  # (4,4,cin,cout)
    k4 = k4.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * cin, cout)
    y = lax.conv_general_dilated(s, k4, (1, 1), "VALID", dimension_numbers=DN)
    return y + b


def conv_s2d_matmul(x, k, b):
    B, H, W, cin = x.shape
    cout = k.shape[-1]
    oh, ph = _same_pads(H, 2)
    ow, pw = _same_pads(W, 2)
    xp = jnp.pad(x, ((0, 0), (ph[0], 2 * oh + 2 - H - ph[0]), (pw[0], 2 * ow + 2 - W - pw[0]), (0, 0)))
    s = xp.reshape(B, oh + 1, 2, ow + 1, 2, cin).transpose(0, 1, 3, 2, 4, 5).reshape(B, oh + 1, ow + 1, 4 * cin)
    k4 = jnp.pad(k, ((0, 1), (0, 1), (0, 0), (0, 0)))
    k4 = k4.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(16 * cin, cout)
    p = jnp.concatenate([s[:, i : i + oh, j : j + ow] for i in range(2) for j in range(2)], -1)
    return (p.reshape(-1, 16 * cin) @ k4).reshape(B, oh, ow, cout) + b


def conv1_slices(x, k, b):
    return conv_slices(x, k, b, s=1)


def conv1_ref(x, k, b):
    return conv_ref(x, k, b, s=1)


def conv1_taps(x, k, b):
    """Stride 1 SAME 3x3: one matmul to every tap's contribution, then nine shifted sums (col2im)."""
    B, H, W, cin = x.shape
    cout = k.shape[-1]
    u = (x.reshape(-1, cin) @ k.transpose(2, 0, 1, 3).reshape(cin, 9 * cout)).reshape(B, H, W, 9, cout)
    u = jnp.pad(u, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
    # y[p,q] = sum_ij x[p+i-1, q+j-1] k[i,j] = sum_ij u[p+i-1, q+j-1, ij] -> u_pad index p+i
    # wait: u_pad[r] = u[r-1], need u[p+i-1] ... but contributions: y[p] += x[p+i-1] k[i]; u[r, i] = x[r] k[i]; so y[p] = sum_i u[p+i-1, i] = sum_i u_pad[p+i, i]
    y = sum(u[:, i : i + H, j : j + W, 3 * i + j] for i in range(3) for j in range(3))
    return y + b


def tconv_taps(x, k, b):
    """One matmul to every tap's contribution (9*cout channels), then shifted sums into the four phases."""
    B, n, m, cin = x.shape
    cout = k.shape[-1]
    u = (x.reshape(-1, cin) @ k.transpose(2, 0, 1, 3).reshape(cin, 9 * cout)).reshape(B, n, m, 9, cout)
    up = jnp.pad(u, ((0, 0), (1, 0), (1, 0), (0, 0), (0, 0)))
    t = lambda i, j, di, dj: up[:, 1 - di : 1 - di + n, 1 - dj : 1 - dj + m, 3 * i + j]  # u at [p-di, q-dj], tap (i, j)
    ee = t(0, 0, 1, 1) + t(0, 2, 1, 0) + t(2, 0, 0, 1) + t(2, 2, 0, 0)
    eo = t(0, 1, 1, 0) + t(2, 1, 0, 0)
    oe = t(1, 0, 0, 1) + t(1, 2, 0, 0)
    oo = t(1, 1, 0, 0)
    y = jnp.stack([ee, eo, oe, oo], axis=3)
    return _d2s(y.reshape(B, n, m, 4 * cout), cout) + b


B = 128
LAYERS = {
    "enc1 conv 1->32 s2 28": ((28, 28, 1), 32, "conv", (0, 1)),
    "enc2 conv 32->64 s2 14": ((14, 14, 32), 64, "conv", (0, 1, 2)),
    "dec1 tconv 64->64 s2 7": ((7, 7, 64), 64, "tconv", (0, 1, 2)),
    "dec2 tconv 64->32 s2 14": ((14, 14, 64), 32, "tconv", (0, 1, 2)),
    "out conv 32->1 s1 28": ((28, 28, 32), 1, "conv1", (0, 1, 2)),
}
CANDS = {
    "conv": [conv_ref, conv_slices, conv_s2d, conv_s2d_matmul],
    "tconv": [tconv_ref, tconv_taps, tconv_subpixel_conv, tconv_subpixel_matmul, tconv_phases, tconv_patches],
    "conv1": [conv1_ref, conv1_taps],
}
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
only = sys.argv[2:]
r = np.random.default_rng(0)
for name, (shape, cout, kind, argnums) in LAYERS.items():
    if only and not any(o in name for o in only):
        continue
    x = jnp.asarray(r.standard_normal((B, *shape)), jnp.float32)
    k = jnp.asarray(r.standard_normal((3, 3, shape[-1], cout)) * 0.1, jnp.float32)
    b = jnp.zeros((cout,), jnp.float32)
    # argnums over (k, b, x)
    fns = {
        f.__name__: jax.jit(jax.grad(lambda k, b, x, f=f: jnp.sum(f(x, k, b) ** 2), argnums=argnums))
        for f in CANDS[kind]
    }
    fwd = {f.__name__: jax.jit(f) for f in CANDS[kind]}
    for n_, fn in fns.items():  # compile both before timing
        jax.block_until_ready(fn(k, b, x))
        jax.block_until_ready(fwd[n_](x, k, b))
    ratios = {n_: [] for n_ in fns}
    times = {n_: [] for n_ in fns}
    ftimes = {n_: [] for n_ in fns}
    names = list(fns)
    for rd in range(rounds):
        order = names[rd % len(names) :] + names[: rd % len(names)]
        got = {}
        for n_ in order:
            reps = 3
            t0 = time.perf_counter()
            for _ in range(reps):
                out = fns[n_](k, b, x)
            jax.block_until_ready(out)
            got[n_] = (time.perf_counter() - t0) / reps * 1e3
            t0 = time.perf_counter()
            for _ in range(reps):
                out = fwd[n_](x, k, b)
            jax.block_until_ready(out)
            ftimes[n_].append((time.perf_counter() - t0) / reps * 1e3)
        for n_ in names:
            times[n_].append(got[n_])
            ratios[n_].append(got[n_] / got[names[0]])
    print(f"## {name} (grad argnums {argnums}), {rounds} rounds", flush=True)
    for n_ in names:
        print(
            f"  {n_:24s} fwd+bwd median {np.median(times[n_]):8.2f} ms  fwd median {np.median(ftimes[n_]):7.2f} ms  ratio to ref: median {np.median(ratios[n_]):.3f} (min {min(ratios[n_]):.3f} max {max(ratios[n_]):.3f})",
            flush=True,
        )
