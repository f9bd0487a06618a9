"""Bits per dimension of 8-bit images, beside the nats every metric is in.

A likelihood that gives the probability of each of the 256 values (`data_kind` "8bit", the
discretized logistic mixture) is scored as it is: bits/dim = -log p(x) / (D ln 2).

A density over the pixels scaled to [0, 1] ("unit_interval", "real": the continuous Bernoulli,
the Gaussians) is not a probability of the 256 values. Each value k / 255 stands for the bin of
width 1/255 around it; the probability of the bin is the density integrated over it, which is
the density at its centre times 1/255 when the density is flat over the bin. So each dimension
adds ln 255 nats:

    bits/dim = (-log p(x) + D ln 255) / (D ln 2)

This is the correction of Theis et al. (2016) for uniform dequantization (where the data is
(k + u) / 256, the width is 1/256 and the term D ln 256): with noise u inside each bin, the
expected -log p of the noisy data plus D ln(1 / width) bounds the discrete negative log-likelihood
from above (Jensen). The zoo evaluates the density at the bin centres, which the model was
trained on, so for such likelihoods the figure is this approximation, not a bound. A Bernoulli
("binary") on grey pixels is no probability of the 256 values either way: no bits/dim.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

EIGHT_BIT = 256
NATS_PER_BIN = {"8bit": 0.0, "unit_interval": math.log(EIGHT_BIT - 1), "real": math.log(EIGHT_BIT - 1)}


def bits_per_dim(log_likelihood: float, dims: int, data_kind: Optional[str]) -> Optional[float]:
    """Bits per dimension of a log-likelihood (nats, of D = `dims` 8-bit values), corrected for a
    density as the module says; None for a likelihood of another kind."""
    if data_kind not in NATS_PER_BIN or log_likelihood is None:
        return None
    return (-log_likelihood + dims * NATS_PER_BIN[data_kind]) / (dims * math.log(2))


def with_bits_per_dim(
    metrics: Mapping[str, Any], pixel_levels: Optional[int], dims: int, data_kind: Optional[str]
) -> dict:
    """`metrics` with `bits_per_dim` (of the importance-sampled log-likelihood where estimated, else
    of the ELBO, a bound) and `bits_per_dim_of` naming which, for 8-bit data; unchanged otherwise."""
    metrics = dict(metrics)
    if pixel_levels != EIGHT_BIT or data_kind not in NATS_PER_BIN:
        return metrics
    for key in ("log_likelihood", "conditional_log_likelihood", "elbo"):
        if metrics.get(key) is not None:
            metrics["bits_per_dim"] = bits_per_dim(metrics[key], dims, data_kind)
            metrics["bits_per_dim_of"] = key
            break
    return metrics
