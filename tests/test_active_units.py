"""Active units by Burda et al.'s definition (2015): a latent unit is active when the variance
over the data of its posterior mean E_q[z_u] exceeds 0.01. Found untested by the mutation
check (issue 32): counting the units below the threshold instead passed every test."""

import numpy as np

from zoo.evaluation.evaluate import active_units


def posterior_means_with_variances(variances, rows=500, seed=0):
    """Posterior means (rows, units) whose per-unit variance over the rows is exactly `variances`."""
    noise = np.random.default_rng(seed).normal(size=(rows, len(variances)))
    standardised = (noise - noise.mean(axis=0)) / noise.std(axis=0)
    return standardised * np.sqrt(variances) + 3.0  # a common offset: the spread counts, not the location


def test_a_unit_is_active_when_its_posterior_mean_varies_by_more_than_a_hundredth():
    variances = np.array([1.0, 0.02, 0.011, 0.009, 0.001, 0.0])
    assert active_units(posterior_means_with_variances(variances)) == 3
    assert active_units(posterior_means_with_variances(np.full(4, 0.5))) == 4
    assert active_units(posterior_means_with_variances(np.full(4, 0.005))) == 0
