"""A hierarchy of stochastic layers as one distribution over the concatenated latent.

A model with layers z_1 (nearest x) ... z_L holds them as one vector
z = [z_1, ..., z_L]; its prior p(z_L) p(z_{L-1} | z_L) ... and its posterior
q(z_L | x) q(z_{L-1} | x, z_L) ... are each a `LayeredLatent`: a
`distrax.Distribution` over z that samples ancestrally, top layer first, and
scores a z as the sum of every layer's conditional log density. Encoders,
priors, decoders, objectives and importance sampling then see the same
contract as for a one-layer model (event shape `(sum of sizes,)`), so an HVAE
or a ladder VAE is components and a recipe, not a branch in the core.
"""

from __future__ import annotations

from typing import Callable, Sequence

import distrax
import jax
import jax.numpy as jnp

Array = jax.Array
# The distribution of one layer given a sample of the layer above, shape (..., B, size_above).
Conditional = Callable[[Array], distrax.Distribution]


def split_layers(z: Array, sizes: Sequence[int]) -> list[Array]:
    """[z_1, ..., z_L] from the concatenated latent (..., sum(sizes)), bottom first."""
    bounds = [sum(sizes[:i]) for i in range(1, len(sizes))]
    return jnp.split(z, bounds, axis=-1)


class LayeredLatent(distrax.Distribution):
    """p(z_L) prod_l p(z_l | z_{l+1}) over z = [z_1, ..., z_L]; batch shape of the top layer.

    `top` is the top layer's distribution (batch (B,), event (sizes[-1],));
    `conditionals[l]` gives layer l's distribution from a sample of layer l+1,
    for l = 0 .. L-2 (bottom first, as `sizes`). Each conditional must accept
    samples with leading sample dimensions (..., B, size) and return a
    distribution of batch shape (..., B).

    >>> prior = LayeredLatent(sizes=(40, 40), top=distrax.MultivariateNormalDiag(jnp.zeros((B, 40))),
    ...                       conditionals=[lambda z2: lower_prior(z2)])  # doctest: +SKIP
    """

    def __init__(self, sizes: Sequence[int], top: distrax.Distribution, conditionals: Sequence[Conditional]):
        if len(conditionals) != len(sizes) - 1:
            raise ValueError(f"{len(sizes)} layers need {len(sizes) - 1} conditionals, got {len(conditionals)}")
        self.sizes = tuple(sizes)
        self.top = top
        self.conditionals = tuple(conditionals)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (sum(self.sizes),)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.top.batch_shape

    def _sample_n(self, key: Array, n: int) -> Array:
        return self._sample_n_and_log_prob(key, n)[0]

    def _sample_n_and_log_prob(self, key: Array, n: int) -> tuple[Array, Array]:
        """Ancestral sampling, top layer first, scoring each layer as it is drawn."""
        keys = jax.random.split(key, len(self.sizes))
        above, log_prob = self.top.sample_and_log_prob(seed=keys[-1], sample_shape=(n,))
        layers = [above]
        for conditional, layer_key in zip(reversed(self.conditionals), reversed(keys[:-1])):
            above, layer_log_prob = conditional(above).sample_and_log_prob(seed=layer_key)
            layers.insert(0, above)
            log_prob = log_prob + layer_log_prob
        return jnp.concatenate(layers, axis=-1), log_prob

    def log_prob(self, value: Array) -> Array:
        """log p(z_L) + sum_l log p(z_l | z_{l+1})."""
        layers = split_layers(value, self.sizes)
        log_prob = self.top.log_prob(layers[-1])
        for index, conditional in enumerate(self.conditionals):
            log_prob = log_prob + conditional(layers[index + 1]).log_prob(layers[index])
        return log_prob

    def mean(self) -> Array:
        """The ancestral mean: the top layer's mean, then each layer's mean given the mean above.

        For Gaussian layers with nonlinear conditionals this is not E[z] but the
        point a deterministic pass through the hierarchy reaches; reconstructions
        and active units use it as the posterior's centre.
        """
        above = self.top.mean()
        layers = [above]
        for conditional in reversed(self.conditionals):
            above = conditional(above).mean()
            layers.insert(0, above)
        return jnp.concatenate(layers, axis=-1)

    def mode(self) -> Array:
        """The ancestral mean (see `mean`)."""
        return self.mean()
