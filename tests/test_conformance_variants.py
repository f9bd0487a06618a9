"""The conformance suite's second half: every recipe in registry.yaml (tests/test_conformance.py
has the components, and the helpers both halves use). In two files so that the two workers of
`pytest -n 2 --dist loadfile` share the suite's longest part; the tiers are as described there:
the fast test builds each variant and runs it to its loss abstractly, the slow one runs
`check_recipe` (jit against eager, gradients, one update from the training step's own loss and
gradients, compiled)."""

import jax
import jax.numpy as jnp
import pytest

from tests.test_conformance import BATCH, VARIANTS, variant_recipe
from zoo.core.assembly import assemble
from zoo.core.interfaces import Batch
from zoo.testing import check_recipe, check_shapes


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_and_runs_a_forward_pass_abstractly(registry, book, variant, data_files, tmp_path):
    """Fast: the variant's own recipe, its data read as the full check reads it, built and run
    under `jax.eval_shape` (its components' values are checked by the test above)."""
    recipe = variant_recipe(registry, book, variant, data_files, tmp_path)

    def loss():
        experiment = assemble(recipe, registry, check_values=False)
        train = experiment.dataset.train
        x, c = experiment.condition.split(jnp.asarray(train.images[:BATCH]), jnp.asarray(train.labels[:BATCH]))
        check_shapes(experiment.model, x, c, BATCH)
        return experiment.objective(experiment.model, Batch(x, c), jax.random.key(0))[0]

    assert jax.eval_shape(loss).shape == (), f"{variant}: the loss is not one number"


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_conforms(registry, book, variant, data_files, tmp_path):
    # Each builds, has the right shapes, a finite loss equal with and without
    # jit, and trains a step. Variants reading data files read the suite's own.
    check_recipe(variant_recipe(registry, book, variant, data_files, tmp_path), registry)
