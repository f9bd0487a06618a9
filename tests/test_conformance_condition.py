"""The conformance suite's c-dependence check (issue 32): a prior that needs a condition must
give another p(z | c) for another c. Before it, Sohn et al.'s prior network fed zeros in place
of c passed every conformance test; only an export test noticed."""

import jax.numpy as jnp
import pytest
from flax import nnx

from vae_zoo_plugins.base.priors import make_conditional_prior
from tests.conftest import first_party_registry, plugin_of
from zoo.core.assembly import assemble
from zoo.testing import check_component, check_condition_dependence, prior_needs_condition


class ConditionBlindPrior(nnx.Module):
    """Sohn et al.'s prior network fed zeros in place of c."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, c, batch_size):
        return self.inner(jnp.zeros_like(c), batch_size)


def make_condition_blind_prior(latent_dim, c_shape, rngs):
    """Needs a condition (the factory it wraps refuses a model without one), and ignores it."""
    return ConditionBlindPrior(make_conditional_prior(latent_dim, c_shape, rngs, hidden=(8,)))


def test_a_prior_network_fed_zeros_for_c_fails_the_conformance_suite():
    broken = first_party_registry(plugin_of("blind", ("prior", "condition_blind", make_condition_blind_prior)))
    with pytest.raises(AssertionError, match=r"the prior's p\(z \| c\) does not depend on c"):
        check_component(broken, "prior", "condition_blind")


@pytest.mark.parametrize(
    ("variant", "overrides", "needs"), [("cvae_sohn", ["prior.hidden=[8]"], True), ("cvae_mlp", [], False)]
)
def test_the_check_reaches_a_prior_that_needs_its_condition_and_spares_one_that_takes_none(
    book, registry, variant, overrides, needs
):
    recipe = book.resolve(variant, registry, ["encoder.hidden=[8]", "decoder.hidden=[8]", *overrides])
    experiment = assemble(recipe, registry)
    assert prior_needs_condition(recipe, registry, experiment.model) is needs
    train = experiment.dataset.train
    _, c = experiment.condition.split(jnp.asarray(train.images[:4]), jnp.asarray(train.labels[:4]))
    if needs:
        check_condition_dependence(experiment.model, c, variant)
    else:  # N(0, I) takes no condition: the same p(z) for every c is its definition, and the check would fail
        with pytest.raises(AssertionError, match="does not depend on c"):
            check_condition_dependence(experiment.model, c, variant)
