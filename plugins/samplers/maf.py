"""`maf_fitted`: a masked autoregressive flow (Papamakarios et al. 2017) fitted by maximum
likelihood to a trained run's codes, the posterior means of its training split.

p(z) = distrax.Transformed(N(0, I), standardise o f_L o ... o f_1), each f_l a
`MaskedAutoregressiveAffine`: z_d = m_d(z_<d) + exp(a_d(z_<d)) u_d with [m, a] from a MADE (the
one of the IAF encoder, vae_zoo_plugins.families.flows), the order of the units reversed between
steps. The density's direction, z -> u, is one MADE pass per step, which is what fitting needs;
sampling, u -> z, is D passes. The MADEs' outputs start at zero, so before it is fitted the flow is
the identity and the prior N(0, I).
"""

from __future__ import annotations

from typing import Annotated, Optional, Sequence

import distrax
import jax
import jax.numpy as jnp
from flax import nnx

import zoo
from zoo import AtLeast
from vae_zoo_plugins.families.flows import MADE
from vae_zoo_plugins.layers.dense import activation_fn, check_sizes
from vae_zoo_plugins.samplers.fitting import (
    BatchSize,
    CodeStandardisation,
    FitBudget,
    FittedCodeDistribution,
    LearningRate,
    Seed,
    Steps,
    check_budget,
    fit_by_gradient,
    frozen,
    posterior_means,
    standard_normal,
)


class MaskedAutoregressiveAffine(distrax.Bijector):
    """u -> z, z_d = shift_d(z_<d) + exp(log_scale_d(z_<d)) u_d, [shift, log_scale] = MADE(z): an
    elementwise distrax.ScalarAffine whose parameters the MADE reads from the units before."""

    def __init__(self, made: MADE):
        super().__init__(event_ndims_in=1)
        self.made = made

    def affine(self, z: jax.Array) -> distrax.Bijector:
        shift, log_scale = self.made(z)
        return distrax.Block(distrax.ScalarAffine(shift, log_scale=log_scale), 1)

    def inverse_and_log_det(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One MADE pass: every unit's parameters come from z itself."""
        return self.affine(z).inverse_and_log_det(z)

    def forward_and_log_det(self, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        """D passes: after pass k the units of degree <= k are exact (each sees only lower degrees)."""
        z = jax.lax.fori_loop(0, u.shape[-1], lambda _, z: self.affine(z).forward(u), jnp.zeros_like(u))
        return self.affine(z).forward_and_log_det(u)


class MaskedAutoregressiveFlowPrior(nnx.Module):
    """A MAF of `layers` steps over the standardised codes, fitted after training (N(0, I) before)."""

    def __init__(self, latent_dim: int, layers: int, hidden: Sequence[int], activation: str, budget: FitBudget):
        rngs = nnx.Rngs(budget.seed)
        forward, backward = tuple(range(1, latent_dim + 1)), tuple(range(latent_dim, 0, -1))
        self.steps = nnx.List(
            [
                MADE(latent_dim, 0, hidden, forward if t % 2 == 0 else backward, activation, rngs=rngs)
                for t in range(layers)
            ]
        )
        for made in self.steps:  # each step starts as the identity: u = z
            for head in (made.shift, made.gate):
                head.kernel[...] = jnp.zeros_like(head.kernel[...])
        self.standardisation = CodeStandardisation(latent_dim)
        self.budget = budget

    def distribution(self, steps: nnx.List, batch_size: int) -> FittedCodeDistribution:
        bijectors = [MaskedAutoregressiveAffine(made) for made in steps]
        flow = distrax.Chain([self.standardisation.bijector(), *bijectors[::-1]])  # Chain applies the last first
        code_mean = jax.lax.stop_gradient(self.standardisation.shift[...])
        return FittedCodeDistribution(standard_normal(batch_size, code_mean.shape[0]), flow, code_mean)

    def __call__(self, c: Optional[jax.Array], batch_size: int) -> FittedCodeDistribution:
        return self.distribution(frozen(self.steps), batch_size)

    def fit_after_training(self, model, x: jax.Array, c: Optional[jax.Array], batch_size: int = 1000) -> None:
        """Fit the flow by maximum likelihood to the posterior means of the rows of x."""
        codes = posterior_means(model, x, c, batch_size)
        self.standardisation.fit(codes)  # the flow's density below includes it: fitted to the codes as they are

        def negative_log_likelihood(steps, batch, key):
            return -self.distribution(steps, batch.shape[0]).log_prob(batch).mean()

        fit_by_gradient(self.steps, negative_log_likelihood, codes, self.budget)


def make_maf_fitted_prior(
    latent_dim,
    layers: Annotated[int, AtLeast(1)] = 5,
    hidden: Sequence[int] = (128, 128),
    activation: str = "relu",
    steps: Steps = 3000,
    batch_size: BatchSize = 256,
    learning_rate: LearningRate = 1e-3,
    seed: Seed = 0,
) -> MaskedAutoregressiveFlowPrior:
    """A masked autoregressive flow fitted by maximum likelihood to the training codes after training.

    `layers` MADE steps of `hidden` units (the unit order reversed between steps), fitted by Adam for
    `steps` minibatches; N(0, I) before it is fitted. A sampler: `zoo sample RUN --sampler maf_fitted`.

    >>> prior = make_maf_fitted_prior(16, layers=5, steps=3000)  # doctest: +SKIP
    """
    if layers < 1:
        raise ValueError(f"layers: expected at least 1, got {layers}")
    check_sizes("hidden", hidden, allow_empty=False)
    activation_fn(activation)
    budget = check_budget(FitBudget(steps, batch_size, learning_rate, seed))
    return MaskedAutoregressiveFlowPrior(latent_dim, layers, tuple(hidden), activation, budget)


make_maf_fitted_prior.sampler = True  # type: ignore[attr-defined]
make_maf_fitted_prior.conformance = {"options": {"layers": 2, "hidden": [8], "steps": 20}}  # type: ignore[attr-defined]


@zoo.hookimpl
def register_components(register):
    """The masked autoregressive flow fitted after training."""
    register("prior", "maf_fitted", make_maf_fitted_prior)
