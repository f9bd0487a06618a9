"""FactorVAE, the adversarial autoencoder and VAE-GAN (plugins/families/adversarial.py): the
density-ratio trick against a known total correlation, and each network moved by its own loss only."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from zoo.core.assembly import assemble
from zoo.core.groups import group_labels, parameter_groups
from zoo.core.interfaces import Batch
from zoo.training.step import TrainState, make_train_step, step_key
from vae_zoo_plugins.families.adversarial import Discriminator, factor_vae_discriminator_loss, permute_dims


def test_permuting_each_unit_keeps_its_values_and_breaks_the_pairing():
    z = jnp.arange(40.0).reshape(20, 2) * jnp.array([1.0, -1.0])
    shuffled = np.asarray(permute_dims(z, jax.random.key(0)))
    for unit in range(2):
        assert sorted(shuffled[:, unit]) == sorted(np.asarray(z[:, unit]))
    assert not np.array_equal(np.argsort(shuffled[:, 0]), np.argsort(-shuffled[:, 1]))


@pytest.mark.slow  # 4000 steps of a small discriminator: 40-60 s on 2 loaded cores
def test_the_density_ratio_trick_recovers_the_total_correlation_of_a_correlated_gaussian():
    """For z ~ N(0, [[1, rho], [rho, 1]]), KL(q(z) || q(z_1) q(z_2)) = -1/2 log(1 - rho^2) in closed
    form; the trained discriminator's mean logit on 20000 fresh draws estimates it, within 4 of
    their standard errors (about 0.02 nats). Softplus units (a smooth log-ratio, here a quadratic)
    and a decaying learning rate (the last iterate is no snapshot of Adam's noise); with 1500
    steps of ReLU units the estimate fell 0.01-0.03 nats short, the discriminator's own bias, and
    over three seeds of this setting it was 0.004-0.008 short (under 1.5 standard errors)."""
    rho = 0.8
    truth = -0.5 * np.log(1.0 - rho**2)
    cholesky = jnp.asarray(np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]])), jnp.float32)
    graphdef, params = nnx.split(Discriminator(2, (64, 64), "softplus", rngs=nnx.Rngs(0)))
    steps = 4000
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps))

    @jax.jit
    def train(params, opt_state, key):
        draw_key, permute_key = jax.random.split(key)
        z = jax.random.normal(draw_key, (2048, 2)) @ cholesky.T

        def loss(p):
            return factor_vae_discriminator_loss(nnx.merge(graphdef, p), z, permute_key)[0]

        updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = optimizer.init(params)
    for key in jax.random.split(jax.random.key(1), steps):
        params, opt_state = train(params, opt_state, key)
    z = jax.random.normal(jax.random.key(99), (20000, 2)) @ cholesky.T
    logits = np.asarray(nnx.merge(graphdef, params)(z), np.float64)
    standard_error = logits.std() / np.sqrt(len(logits))
    assert abs(logits.mean() - truth) < 4 * standard_error, (logits.mean(), truth, standard_error)


SMALL = [
    "encoder.hidden=[16]",
    "decoder.hidden=[16]",
    "latent_dim=3",
    "train.batch_size=8",
    "objective.discriminator_hidden=[8, 8]",
]
LEARNING_RATE = 0.1


def flat(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


@pytest.mark.slow  # three losses differentiated over the whole model and a step compiled: 20-50 s under load
@pytest.mark.parametrize("variant", ["factor_vae", "aae", "vae_gan"])
def test_each_network_moves_by_its_own_loss_only(book, registry, variant):
    """One training step (SGD on every group) against each group's loss differentiated alone over
    the whole model: each group's parameters move by their own loss's gradient, though the other
    losses reach them too (the generator's loss depends on the discriminator, and the reverse)."""
    experiment = assemble(book.resolve(variant, registry, SMALL), registry)
    graphdef, params = nnx.split(experiment.model)
    groups = parameter_groups(experiment.objective)
    labels = group_labels(params, groups)
    train = experiment.dataset.train
    images, labels_ = jnp.asarray(train.images[:8]), jnp.asarray(train.labels[:8])
    batch = Batch(*experiment.condition.split(images, labels_))
    rng = step_key(0, 0)

    def gradient_of(group):
        return flat(jax.grad(lambda p: group.loss(nnx.merge(graphdef, p), batch, rng, step=0)[0])(params))

    gradients = {g.name: gradient_of(g) for g in groups}
    for group in groups:  # every other loss reaches this group's parameters: the test has teeth
        others = [n for n in gradients if n != group.name]
        assert any(
            np.any(gradients[o][i] != 0) for o in others for i, label in enumerate(labels) if label == group.name
        ), group.name

    optimizer = optax.sgd(LEARNING_RATE)
    before = flat(params)
    step = make_train_step(graphdef, experiment.objective, experiment.condition, optimizer, seed=0)
    state, _ = step(TrainState(params, optimizer.init(params)), images, labels_, jnp.arange(8)[None], 0, 0)
    for i, (old, new) in enumerate(zip(before, flat(state.params))):
        expected = old - LEARNING_RATE * gradients[labels[i]][i]
        np.testing.assert_allclose(new, expected, rtol=1e-4, atol=1e-6, err_msg=f"{variant}: leaf {i} ({labels[i]})")
