"""The conformance suite a plugin author runs on their own component.

    from zoo.testing import check_component
    check_component(registry, "encoder", "resnet", {"depth": 2})

Each check builds a small model around the component (its partners are the
first-party components named in `PARTNERS`, looked up by name), which already
checks every output against its kind's contract (`zoo.core.contract`), and asserts:
shapes of every distribution (again after `fit_after_training`, for a prior fitted
after training); an encoder whose output depends on x, a
decoder whose output depends on z and, in a conditional model, a prior that needs
a condition (its factory refuses a model without one) whose p(z | c) depends on c;
a likelihood normalised over its event (its
log_prob summed over every dimension of x); encoder and prior distributions
whose log_prob agrees with their samples; a finite loss, the same under
`jax.jit`, finite gradients (the training step's own loss and gradients,
compiled); and one update from them that changes parameters and leaves every
finite parameter finite (for an objective trained in several parameter groups,
every group's loss finite and every group's parameters changed).

A component that needs other partners than `PARTNERS`, or data files, says so
on its factory (no test names it): `factory.conformance = {...}` with keys

- `partners`: recipe entries laid over `PARTNERS` (`{"latent_dim": [2, 2]}`);
- `options`: the component's own options when the caller gives none;
- `files`: the kind of files a dataset reads (e.g. "idx"); the test suite that
  checks it passes their directory (or file) as the option `source_dir`;
- `path_option`: the option that takes them instead of `source_dir` (e.g. "path").
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from zoo.core.contract import ContractError
from zoo.errors import first_line
from zoo.errors import ModelBuildError
from zoo.core.groups import group_labels, parameter_groups
from zoo.core.interfaces import Batch
from zoo.core.recipes import deep_merge, latent_sizes, validate
from zoo.core.registry import Component, Registry, build_component

PARTNERS: dict[str, Any] = {
    "dataset": {"name": "digits"},
    "latent_dim": 4,
    "encoder": {"name": "mlp", "hidden": [16]},
    "decoder": {"name": "mlp", "hidden": [16]},
    "prior": {"name": "standard_normal"},
    "likelihood": {"name": "bernoulli"},
    "objective": {"name": "elbo"},
    "train": {"steps": 1, "batch_size": 4, "learning_rate": 1.0e-3},
}

# The settings a component is tried in; it must work in at least one.
SETTINGS: dict[str, dict[str, Any]] = {
    "unconditional": {},
    "class_conditional": {"condition": {"name": "onehot_label"}},
}

# Importance sampling with a Gaussian proposal checks a latent density reliably in few dimensions only.
MAX_DENSITY_DIMS = 8
DENSITY_DRAWS = 10000


def declared(component: Component) -> dict[str, Any]:
    """What a component's factory declares for the conformance suite (`factory.conformance`)."""
    return dict(getattr(component.factory, "conformance", None) or {})


def component_recipe(
    kind: str,
    name: str,
    options: Optional[Mapping[str, Any]] = None,
    setting: str = "unconditional",
    partners: Mapping[str, Any] = PARTNERS,
) -> dict[str, Any]:
    """A small raw recipe with the component under test in its slot."""
    recipe = copy.deepcopy(dict(partners))
    recipe.update(copy.deepcopy(SETTINGS[setting]))
    recipe[kind] = {"name": name, **(options or {})}
    return recipe


def check_component(
    registry: Registry,
    kind: str,
    name: str,
    options: Optional[Mapping[str, Any]] = None,
    partners: Mapping[str, Any] = PARTNERS,
) -> list[str]:
    """Run the conformance checks on one component in every setting it supports.

    Returns the settings that passed; raises AssertionError if none does, or if
    the component breaks its kind's contract in any setting.
    """
    wanted = declared(registry.get(kind, name))
    partners = deep_merge(partners, wanted.get("partners", {}))
    options = wanted.get("options") if options is None else options
    passed, refused = [], []
    for setting in SETTINGS:
        raw = component_recipe(kind, name, options, setting, partners)
        recipe = validate(raw, registry, name=f"{kind}:{name}", source="zoo.testing")
        try:
            check_recipe(recipe, registry)
        except ContractError as exc:  # built, but broke the contract: a bug, not a refusal
            raise AssertionError(f"{kind} {name!r} ({setting}): {exc}") from exc
        except ModelBuildError as exc:  # e.g. a conditional prior in the unconditional setting
            refused.append(f"{setting}: {exc}")
            continue
        passed.append(setting)
    assert passed, f"{kind} {name!r} works in no setting: " + "; ".join(refused)
    return passed


def check_recipe(recipe: Mapping[str, Any], registry: Registry, *, batch_size: int = 4, seed: int = 0) -> None:
    """All conformance checks on one resolved recipe."""
    from zoo.core.assembly import assemble
    from zoo.training.step import loss_at_step, make_loss_and_gradients, make_optimizer

    experiment = assemble(recipe, registry)
    model, condition = experiment.model, experiment.condition
    variant = recipe["variant"]
    train = experiment.dataset.train
    images, labels = jnp.asarray(train.images[:batch_size]), jnp.asarray(train.labels[:batch_size])
    x, c = condition.split(images, labels)
    check_shapes(model, x, c, batch_size)
    fit = getattr(model.prior, "fit_after_training", None)
    if (
        fit is not None
    ):  # a prior fitted after training (zoo.evaluation.trained_run) must take the data and still conform
        fit(model, x, c)
        check_shapes(model, x, c, batch_size)
    check_dependence(model, x, c, variant)
    if model.conditional and prior_needs_condition(recipe, registry, model):
        check_condition_dependence(model, c, variant)
    check_likelihood_normalised(model.likelihood, variant)
    if (
        model.latent_kind == "continuous"
    ):  # a discrete latent's log_prob is against counting measure: no density to test
        for what, distribution in (("encoder", model.encode(x, c)), ("prior", model.prior_distribution(c, batch_size))):
            check_density(distribution, f"{variant}: {what} {recipe[what]['name']!r}")

    rng = jax.random.key(seed)
    graphdef, params = nnx.split(model)
    step = jnp.asarray(0, jnp.int32)
    # The training step's own loss and gradients (every parameter group's gradient of its own loss,
    # zoo.training.step), from the batch's images and labels, compiled as one program: the same
    # program gives the jitted loss, the gradients and the update, where a separate jitted loss and
    # a compiled training step each compiled the model's loss and gradients again.
    loss_and_gradients = make_loss_and_gradients(graphdef, experiment.objective)

    def loss_and_gradients_of(params, images, labels, rng, step):
        x, c = condition.split(images, labels)
        return loss_and_gradients(params, Batch(x, c), rng, step)

    first_loss = parameter_groups(experiment.objective)[0].loss or experiment.objective  # the loss the step reports
    eager = float(loss_at_step(first_loss, nnx.merge(graphdef, params), Batch(x, c), rng, step)[0])
    assert np.isfinite(eager), f"{variant}: loss is not finite ({eager})"
    try:
        jitted_loss, metrics, gradients = jax.jit(loss_and_gradients_of)(params, images, labels, rng, step)
    except Exception as exc:
        raise AssertionError(f"{variant}: the loss fails under jax.jit: {first_line(exc)}") from exc
    jitted = float(jitted_loss)
    assert np.isclose(eager, jitted, rtol=1e-4, atol=1e-4), f"{variant}: loss {eager} eager but {jitted} under jit"
    bad = [
        jax.tree_util.keystr(path)
        for path, g in jax.tree_util.tree_leaves_with_path(gradients)
        if not np.all(np.isfinite(np.asarray(g)))
    ]
    assert not bad, f"{variant}: the loss has non-finite gradients (of {', '.join(bad[:3])})"

    optimizer = make_optimizer(1e-2)
    before = jax.tree.map(np.array, params)

    @jax.jit
    def update(params, gradients):
        updates, _ = optimizer.update(gradients, optimizer.init(params), params)
        return optax.apply_updates(params, updates)

    updated = update(params, gradients)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)), updated, before))
    assert any(changed), f"{variant}: one training step changed no parameter"
    # A fitted prior may hold -inf (the log-weight of a mixture component no code fell in); a value
    # finite before the step must stay finite.
    went_bad = [
        jax.tree_util.keystr(path)
        for (path, after), start in zip(jax.tree_util.tree_leaves_with_path(updated), jax.tree.leaves(before))
        if np.any(np.isfinite(start) & ~np.isfinite(np.asarray(after)))
    ]
    assert not went_bad, f"{variant}: one training step made parameters non-finite ({', '.join(went_bad[:3])})"
    metrics = {"loss": jitted_loss, **metrics}
    check_parameter_groups(experiment.objective, updated, metrics, changed, variant)


def check_parameter_groups(objective, params, metrics, changed: list[bool], variant: str) -> None:
    """An objective trained in several parameter groups (zoo/core/groups.py): after one step, every
    group's loss is finite and every group changed some parameter of its own."""
    groups = parameter_groups(objective)
    if len(groups) == 1:
        return
    labels = group_labels(params, groups)
    for group in groups[1:]:
        value = float(metrics[f"{group.name}_loss"])
        assert np.isfinite(value), f"{variant}: the loss of parameter group {group.name!r} is not finite ({value})"
    for group in groups:
        assert any(c for c, label in zip(changed, labels) if label == group.name), (
            f"{variant}: one training step changed no parameter of group {group.name!r}"
        )


def check_shapes(model, x, c, batch_size: int) -> None:
    """Every distribution has batch shape (B,) and the right event shape."""
    rng = jax.random.key(1)
    q = model.encode(x, c)
    assert tuple(q.batch_shape) == (batch_size,), f"encoder batch shape {q.batch_shape}, expected ({batch_size},)"
    assert tuple(q.event_shape) == (model.latent_dim,), (
        f"encoder event shape {q.event_shape}, expected ({model.latent_dim},)"
    )
    p = model.prior_distribution(c, batch_size)
    assert tuple(p.batch_shape) == (batch_size,) and tuple(p.event_shape) == (model.latent_dim,), (
        f"prior shapes {p.batch_shape} x {p.event_shape}, expected ({batch_size},) x ({model.latent_dim},)"
    )
    z = q.sample(seed=rng)
    p_x = model.decode(z, c)
    assert tuple(p_x.event_shape) == tuple(model.x_shape), (
        f"likelihood event shape {p_x.event_shape}, expected {model.x_shape}"
    )
    assert p_x.log_prob(x).shape == (batch_size,)
    samples = model.sample(rng, c, num_samples=batch_size)
    assert samples.shape == (batch_size,) + tuple(model.x_shape), f"samples of shape {samples.shape}"


def differs(a: Any, b: Any) -> bool:
    """Whether two arrays differ by more than rounding."""
    return not np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def check_dependence(model, x, c, variant: str) -> None:
    """q(z | x, c) changes with x, and the decoder's output changes with z."""
    q, flipped = model.encode(x, c), model.encode(1.0 - x, c)
    centre = q.mean()
    assert differs(centre, flipped.mean()) or differs(q.log_prob(centre), flipped.log_prob(centre)), (
        f"{variant}: the encoder's q(z | x, c) does not depend on x (the same for x and 1 - x)"
    )
    z = q.sample(seed=jax.random.key(2))
    assert differs(model.decoder(z, c), model.decoder(z + 1.0, c)), (
        f"{variant}: the decoder's output does not depend on z (the same for z and z + 1)"
    )


def prior_needs_condition(recipe: Mapping[str, Any], registry: Registry, model) -> bool:
    """Whether the recipe's prior refuses to be built without a condition. A prior that needs c
    must use it; one that takes none (N(0, I) in the blog's CVAE) may ignore the model's c."""
    try:
        build_component(
            registry,
            "prior",
            recipe["prior"],
            ModelBuildError,
            latent_dim=model.latent_dim,
            latent_sizes=latent_sizes(recipe),
            c_shape=None,
            rngs=nnx.Rngs(0),
            encoder=model.encoder,
            x_shape=model.x_shape,
        )
    except ModelBuildError:
        return True
    return False


def other_conditions(c):
    """Conditions other than the batch's own: each row's neighbour's (real conditions, e.g. another
    class), or 1 - c where every row holds the same one."""
    rolled = jnp.roll(c, 1, axis=0)
    return rolled if differs(rolled, c) else 1.0 - c


def check_condition_dependence(model, c, variant: str) -> None:
    """p(z | c) changes with c: its log_prob at its own samples differs under other conditions
    (a distribution equal to another has the same density everywhere)."""
    batch_size = c.shape[0]
    prior = model.prior_distribution(c, batch_size)
    other = model.prior_distribution(other_conditions(c), batch_size)
    z = prior.sample(seed=jax.random.key(7))
    assert differs(prior.log_prob(z), other.log_prob(z)), (
        f"{variant}: the prior's p(z | c) does not depend on c (the same for two different conditions), "
        "though the prior needs a condition"
    )


def check_likelihood_normalised(likelihood, variant: str, rows: int = 3, grid: int = 300) -> None:
    """exp(log_prob) sums (or integrates) to 1 over data of two dimensions: log_prob is a density
    of the whole event, summed over its dimensions, neither a mean nor per dimension.

    A likelihood is given no data shape, so it must work for any; two dimensions are few enough
    to enumerate (discrete data, up to 16 values seen per dimension) or integrate on a grid.
    """
    params = 0.5 * jax.random.normal(jax.random.key(3), (rows, 2, likelihood.params_per_dim))
    distribution = likelihood(params)
    draws = np.asarray(distribution.sample(seed=jax.random.key(4), sample_shape=(2000,)), np.float64)
    values = np.unique(draws)
    kind = getattr(likelihood, "data_kind", None)
    if kind == "8bit":  # a probability of each of the 256 values k / 255
        axis, cell = np.arange(256) / 255.0, 1.0
    elif kind == "unit_interval":  # a density on [0, 1]: the midpoints of `grid` cells
        axis, cell = (np.arange(grid) + 0.5) / grid, 1.0 / grid**2
    elif len(values) <= 16:
        axis, cell = values, 1.0
    else:
        low, high = draws.min(), draws.max()
        axis = np.linspace(low - 0.5 * (high - low), high + 0.5 * (high - low), grid)
        cell = (axis[1] - axis[0]) ** 2
    points = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 1, 2)
    data = jnp.asarray(np.broadcast_to(points, (len(points), rows, 2)), jnp.float32)
    log_prob = np.asarray(distribution.log_prob(data), np.float64)
    assert log_prob.shape == (len(points), rows), (
        f"{variant}: the likelihood's log_prob of data (N, {rows}, 2) has shape {log_prob.shape}, expected (N, {rows})"
    )
    total = np.exp(log_prob).sum(axis=0) * cell
    assert np.allclose(total, 1.0, atol=0.05), (
        f"{variant}: the likelihood's exp(log_prob) sums to {np.round(total, 3).tolist()} over data of two dimensions, "
        "not 1: its log_prob must be the density of the whole event, summed over its dimensions"
    )


def check_density(distribution, what: str, draws: int = DENSITY_DRAWS) -> None:
    """A latent distribution's log_prob agrees with its samples z: it is normalised (importance
    sampling from a Gaussian wider than the samples), and Stein's identities hold per unit i,
    E[d log p / d z_i] = 0 and E[(z_i - mean_i) d log p / d z_i] = -1, which a log_prob of another
    location or spread than the samples' breaks.

    Skipped above MAX_DENSITY_DIMS dimensions. (Its `mean()` is not compared: a hierarchy's is the
    ancestral mean, not E[z].)
    """
    dims = int(np.prod(distribution.event_shape))
    if dims > MAX_DENSITY_DIMS:
        return
    samples = distribution.sample(seed=jax.random.key(5), sample_shape=(draws,))  # (n, B, D)
    log_prob, score = jax.value_and_grad(lambda z: distribution.log_prob(z).sum())(samples)
    assert np.isfinite(float(log_prob)) and np.all(np.isfinite(np.asarray(score))), (
        f"{what}: log_prob or its gradient is not finite at its own samples"
    )
    z, score = np.asarray(samples, np.float64), np.asarray(score, np.float64)
    mean, std = z.mean(axis=0), z.std(axis=0) + 1e-12
    location = (score * std).mean(axis=0)
    spread = ((z - mean) * score).mean(axis=0)
    assert np.all(np.abs(location) <= 0.1) and np.all(np.abs(spread + 1.0) <= 0.1), (
        f"{what}: its log_prob does not fit its samples: E[std_i d log p / d z_i] = {np.round(location[0], 3).tolist()} "
        f"(expected 0) and E[(z_i - mean_i) d log p / d z_i] = {np.round(spread[0], 3).tolist()} (expected -1), first row"
    )
    scale = 1.5 * std  # wider than the samples, so the proposal covers the tails
    noise = np.asarray(jax.random.normal(jax.random.key(6), z.shape), np.float64)
    points = mean + scale * noise
    log_proposal = np.sum(-0.5 * noise**2 - np.log(scale) - 0.5 * np.log(2 * np.pi), axis=-1)
    log_weights = np.asarray(distribution.log_prob(jnp.asarray(points, jnp.float32)), np.float64) - log_proposal
    top = log_weights.max(axis=0)
    total = np.log(np.exp(log_weights - top).mean(axis=0)) + top
    assert np.allclose(total, 0.0, atol=0.1), (
        f"{what}: exp(log_prob) integrates to {np.round(np.exp(total), 3).tolist()} (importance-sampled), not 1"
    )
