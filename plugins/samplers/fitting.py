"""What the samplers fitted after training share: the codes they are fitted to, the optax loop
that fits a network to them, the standardisation of the codes and the distribution they give.

A sampler is a prior with `fit_after_training(model, x, c, batch_size)` whose factory says
`factory.sampler = True`. Its networks are fitted after training only: the distribution it gives
the model stops their gradients (`frozen`), so a recipe that names it as its prior trains the
model against it unchanged (N(0, I), or uniform codes, until it is fitted).
"""

from __future__ import annotations

from typing import Annotated, Callable, NamedTuple, Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo import Above, AtLeast

Steps = Annotated[int, AtLeast(1)]
BatchSize = Annotated[int, AtLeast(1)]
LearningRate = Annotated[float, Above(0)]
Seed = Annotated[int, AtLeast(0)]


class FitBudget(NamedTuple):
    """How a sampler's network is fitted: Adam at `learning_rate` for `steps` minibatches of
    `batch_size` codes; `seed` draws its initial weights and minibatches, so the fit is a
    function of the codes and the options alone."""

    steps: int
    batch_size: int
    learning_rate: float
    seed: int


def check_budget(budget: FitBudget) -> FitBudget:
    """Refuse a budget outside its ranges (a factory called from Python skips the recipe's checks)."""
    if budget.steps < 1 or budget.batch_size < 1 or not budget.learning_rate > 0 or budget.seed < 0:
        raise ValueError(
            "steps and batch_size: expected at least 1, learning_rate > 0, seed >= 0; got "
            f"{budget.steps}, {budget.batch_size}, {budget.learning_rate}, {budget.seed}"
        )
    return budget


def posterior_means(model, x: jax.Array, c: Optional[jax.Array], batch_size: int = 1000) -> np.ndarray:
    """The codes E[z | x, c] of the N rows of x, `batch_size` at a time: (N, latent_dim)."""
    return np.concatenate(
        [
            np.asarray(model.encode(x[s : s + batch_size], None if c is None else c[s : s + batch_size]).mean())
            for s in range(0, x.shape[0], batch_size)
        ]
    )


def frozen(module: nnx.Module) -> nnx.Module:
    """A copy of `module` whose arrays carry no gradient: the model's own loss cannot move a sampler."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.lax.stop_gradient(state))


def fit_by_gradient(
    module: nnx.Module,
    loss: Callable[[nnx.Module, jax.Array, jax.Array], jax.Array],
    data: np.ndarray,
    budget: FitBudget,
) -> np.ndarray:
    """Train `module`'s nnx.Params by Adam on `loss(module, batch, key)` over `budget.steps`
    minibatches of rows of `data` drawn with replacement, all steps in one compiled scan (no
    Python between steps); returns the loss of each step."""
    graphdef, params, *rest = nnx.split(module, nnx.Param, ...)  # fitted: the parameters; kept: the rest
    optimizer = optax.adam(budget.learning_rate)
    rows = min(budget.batch_size, data.shape[0])

    def step(carry, key, data):
        params, opt_state = carry
        rows_key, loss_key = jax.random.split(key)
        batch = data[jax.random.randint(rows_key, (rows,), 0, data.shape[0])]
        value, grads = jax.value_and_grad(lambda p: loss(nnx.merge(graphdef, p, *rest), batch, loss_key))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    @jax.jit
    def fit(params, data, keys):
        return jax.lax.scan(lambda carry, key: step(carry, key, data), (params, optimizer.init(params)), keys)

    keys = jax.random.split(jax.random.fold_in(jax.random.key(budget.seed), 1), budget.steps)
    (params, _), losses = fit(params, jnp.asarray(data), keys)
    nnx.update(module, params)
    return np.asarray(losses)


class CodeStandardisation(nnx.Module):
    """z = shift + scale * y per unit, shift and scale the codes' mean and standard deviation
    (0 and 1 until fitted): a sampler fits its network to codes of unit scale whatever the run's."""

    def __init__(self, latent_dim: int):
        self.shift = nnx.Variable(jnp.zeros((latent_dim,)))
        self.scale = nnx.Variable(jnp.ones((latent_dim,)))

    def fit(self, codes: np.ndarray) -> np.ndarray:
        """Set the shift and scale to the codes' (N, D) and return the codes standardised."""
        shift, scale = codes.mean(axis=0), codes.std(axis=0) + 1e-6
        self.shift[...], self.scale[...] = jnp.asarray(shift, jnp.float32), jnp.asarray(scale, jnp.float32)
        return ((codes - shift) / scale).astype(np.float32)

    def bijector(self) -> distrax.Bijector:
        """y -> shift + scale * y on the last axis (distrax), its arrays without gradient."""
        shift, scale = jax.lax.stop_gradient(self.shift[...]), jax.lax.stop_gradient(self.scale[...])
        return distrax.Block(distrax.ScalarAffine(shift, scale), 1)


class FittedCodeDistribution(distrax.Transformed):
    """A density of the codes, distrax.Transformed(base, bijector), batch (B,); its mean is the
    mean of the codes it was fitted to (0 before), which the fit approximates: a flow's or a
    second stage's own mean has no closed form. `zoo sample --temperature` scales around it."""

    def __init__(self, base: distrax.Distribution, bijector: distrax.Bijector, code_mean: jax.Array):
        super().__init__(base, bijector)
        self.code_mean = code_mean

    def mean(self) -> jax.Array:
        return jnp.broadcast_to(self.code_mean, self.batch_shape + self.event_shape)

    def kl_divergence(self, other_dist, **kwargs):
        """No closed form: the model takes the one-sample estimate log q(z) - log p(z)."""
        raise NotImplementedError("a fitted density of the codes has no closed-form KL")


def standard_normal(batch_size: int, dims: int) -> distrax.MultivariateNormalDiag:
    """N(0, I) over (batch_size, dims): the base of a flow, the prior of a second stage."""
    return distrax.MultivariateNormalDiag(jnp.zeros((batch_size, dims)), jnp.ones((batch_size, dims)))
