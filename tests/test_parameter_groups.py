"""Parameter groups (zoo/core/groups.py): each group's gradient is its own loss's with respect to its
own parameters, each group has its own optax chain, and a run trained in groups resumes exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import zoo
from tests.conftest import first_party_registry, plugin_of
from zoo.config import TrainConfig
from zoo.core import optim
from zoo.core.groups import ParameterGroup, group_labels, grouped_value_and_grad, parameter_groups
from zoo.core.objectives import elbo
from zoo.evaluation.trained_run import Run
from zoo.training.experiment import train_and_evaluate

GROUPS = (ParameterGroup("first", ("a",)), ParameterGroup("second", ()))
PARAMS = {"a": {"w": jnp.array([1.0, 2.0])}, "b": {"w": jnp.array([3.0]), "v": jnp.array([0.5, -1.0])}}


def losses(group, params):
    """Two losses that each depend on both groups' parameters."""
    a, b, v = params["a"]["w"], params["b"]["w"], params["b"]["v"]
    if group.name == "first":  # sum(a^2) * b
        return jnp.sum(a**2) * b[0], {"m": jnp.sum(a)}
    return jnp.sum(a) * b[0] ** 2 + jnp.sum(v**3), {}  # sum(a) * b^2 + sum(v^3)


def test_each_group_gets_the_gradient_of_its_own_loss_only():
    loss, metrics, grads = grouped_value_and_grad(losses, PARAMS, GROUPS)
    a, b, v = np.array([1.0, 2.0]), 3.0, np.array([0.5, -1.0])
    assert float(loss) == pytest.approx(np.sum(a**2) * b)
    assert float(metrics["second_loss"]) == pytest.approx(np.sum(a) * b**2 + np.sum(v**3))
    assert float(metrics["m"]) == pytest.approx(3.0)
    # d/da of the first loss (2 a b), not of the second (b^2); d/db of the second (2 sum(a) b), not of the first.
    np.testing.assert_allclose(grads["a"]["w"], 2 * a * b)
    np.testing.assert_allclose(grads["b"]["w"], [2 * np.sum(a) * b])
    np.testing.assert_allclose(grads["b"]["v"], 3 * v**2)


def test_the_longest_prefix_decides_and_the_rest_goes_to_the_open_group():
    groups = (ParameterGroup("model", ()), ParameterGroup("d", ("networks.d",)), ParameterGroup("e", ("networks",)))
    tree = {"encoder": {"k": 1}, "networks": {"d": {"k": 2}, "dd": {"k": 3}, "x": {"k": 4}}}
    assert group_labels(tree, groups) == ["model", "d", "e", "e"]


def test_each_group_steps_with_its_own_optimiser():
    config = TrainConfig(
        learning_rate=0.1,
        optimizer={"name": "sgd"},
        parameter_groups={"second": {"learning_rate": 0.01, "optimizer": None}},
    )
    optimizer = optim.make_grouped_optimizer(config, GROUPS)
    state = optimizer.init(PARAMS)
    assert set(state) == {"first", "second"}
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates, _ = optimizer.update(grads, state, PARAMS)
    np.testing.assert_allclose(updates["a"]["w"], [-0.1, -0.1])
    np.testing.assert_allclose(updates["b"]["v"], [-0.01, -0.01])


def test_one_group_is_the_chain_of_a_model_without_groups():
    config = TrainConfig(learning_rate=0.1)
    single = optim.make_grouped_optimizer(config, parameter_groups(elbo()))
    assert jax.tree.structure(single.init(PARAMS)) == jax.tree.structure(optax.adam(0.1).init(PARAMS))


class Critic(nnx.Module):
    def __init__(self, latent_dim, rngs):
        self.out = nnx.Linear(latent_dim, 1, rngs=rngs)


def critic_elbo(latent_dim, rngs):
    """The ELBO beside a linear critic of z that learns to output 1 (a test's two-group objective)."""
    base = elbo()

    def model_loss(model, batch, rng, step=None):
        loss, metrics = base(model, batch, rng, step)
        z = model.encode(batch.x, batch.c).mean()
        return loss + 0.1 * jnp.mean(model.networks["critic"].out(z) ** 2), metrics

    def critic_loss(model, batch, rng, step=None):
        z = jax.lax.stop_gradient(model.encode(batch.x, batch.c).mean())
        return jnp.mean((model.networks["critic"].out(z) - 1.0) ** 2), {}

    model_loss.networks = {"critic": Critic(latent_dim, rngs)}
    model_loss.parameter_groups = (
        ParameterGroup("model", (), model_loss),
        ParameterGroup("critic", ("networks.critic",), critic_loss),
    )
    return model_loss


critic_elbo.parameter_groups = ("model", "critic")

SMALL = [
    "encoder.hidden=[16]",
    "decoder.hidden=[16]",
    "latent_dim=3",
    "train.batch_size=16",
    "train.log_every=5",
    "train.checkpoint_every=10",
    "train.loop=step",
    "objective={name: critic_elbo}",
    "train.parameter_groups={critic: {learning_rate: 0.01, optimizer: {name: sgd, momentum: 0.9}}}",
]


@pytest.fixture(scope="module")
def critic_registry():
    return first_party_registry(plugin_of("critic_plugin", ("objective", "critic_elbo", critic_elbo)))


def test_a_run_in_groups_resumes_every_group_and_its_optimiser(tmp_path, book, critic_registry):
    def resolved(steps):
        return book.resolve("vae_mlp", critic_registry, [*SMALL, f"train.steps={steps}"])

    train_and_evaluate(resolved(20), tmp_path / "straight", critic_registry, progress=False)
    train_and_evaluate(resolved(10), tmp_path / "resumed", critic_registry, progress=False)
    train_and_evaluate(resolved(20), tmp_path / "resumed", critic_registry, resume=True, progress=False)
    straight, resumed = (Run.load(tmp_path / n, critic_registry, checkpoint="newest") for n in ("straight", "resumed"))
    assert straight.step == resumed.step == 20
    assert "networks" in straight.params and "critic" in straight.params["networks"]
    for x, y in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # The critic trained (its own loss, its own optimiser): its bias moved from the initial 0.
    assert float(jnp.abs(straight.params["networks"]["critic"]["out"]["bias"]).max()) > 1e-3


def test_an_optimiser_for_a_group_the_objective_lacks_is_refused(book, critic_registry):
    with pytest.raises(zoo.RecipeError, match=r"train\.parameter_groups\.critc: .*did you mean 'critic'"):
        book.resolve("vae_mlp", critic_registry, [*SMALL[:-1], "train.parameter_groups={critc: {learning_rate: 0.1}}"])
