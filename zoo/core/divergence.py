"""KL(q || p) between two distrax distributions: distrax's closed form where it has one, a
one-sample Monte Carlo estimate otherwise (flows, hierarchies, the VampPrior), never a
hand-written Gaussian KL.

Apart from zoo/core/model.py so that the contract's checks (zoo/core/contract.py), which
the model's assembly runs, can draw z and its KL without importing the model.
"""

from __future__ import annotations

from typing import Optional

import distrax

from zoo.core.interfaces import Array


def closed_form_kl(q: distrax.Distribution, p: distrax.Distribution) -> Optional[Array]:
    """KL(q || p) in closed form where distrax has one, else None."""
    try:
        return q.kl_divergence(p)
    except NotImplementedError:
        return None


def kl_divergence(q: distrax.Distribution, p: distrax.Distribution, z: Array) -> Array:
    """KL(q || p): closed form where distrax has it, else the one-sample estimate at z ~ q."""
    kl = closed_form_kl(q, p)
    return q.log_prob(z) - p.log_prob(z) if kl is None else kl


def sample_with_kl(q: distrax.Distribution, p: distrax.Distribution, rng: Array) -> tuple[Array, Array]:
    """(z ~ q, KL(q || p)): the closed form, or the one-sample estimate log q(z) - log p(z)
    with log q(z) from the sampling pass itself (a hierarchy scores each layer as it draws it)."""
    kl = closed_form_kl(q, p)
    if kl is not None:
        return q.sample(seed=rng), kl
    z, log_q = q.sample_and_log_prob(seed=rng)
    return z, log_q - p.log_prob(z)
