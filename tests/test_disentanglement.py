"""The disentanglement metrics (zoo.evaluation.disentanglement) on codes whose answer is known: a code that
copies the factors scores near 1, a random code near 0, a code that mixes two factors in one unit
lower than a clean one; MIG against a case computed by hand."""

import math

import numpy as np
import pytest

from zoo.evaluation.disentanglement import (
    dci,
    dci_from_importance,
    disentanglement_scores,
    mig,
    mutual_information,
    require_factors,
)
from zoo.errors import DataError

SIZES = (3, 6, 10, 16, 16)  # the dsprites factors' sizes


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    """2000 examples of five independent, uniformly drawn factors."""
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, size, 2000) for size in SIZES], axis=1)


def test_mig_of_a_case_computed_by_hand():
    factor = np.array([0, 0, 1, 1])
    informative, blind = np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 1.0])
    # I(informative; factor) = 1/2 log(4/3) + 1/4 log(2/3) + 1/4 log 2, I(blind; factor) = 0, H(factor) = log 2.
    by_hand = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert mutual_information(informative, factor) == pytest.approx(by_hand)
    assert mutual_information(blind, factor) == pytest.approx(0.0, abs=1e-12)
    codes = np.stack([informative, blind], axis=1)
    assert mig(codes, factor[:, None]) == pytest.approx(by_hand / math.log(2))  # 0.311
    assert mig(codes[:, ::-1] * -3.0, factor[:, None]) == pytest.approx(by_hand / math.log(2))


def test_a_code_that_copies_the_factors_scores_near_1(factors):
    scores = disentanglement_scores(factors.astype(float), factors)
    assert scores["mig"] > 0.95
    assert scores["dci_disentanglement"] > 0.95 and scores["dci_completeness"] > 0.95
    assert scores["dci_informativeness"] > 0.95
    assert scores["disentanglement_examples"] == len(factors)


def test_a_permuted_scaled_copy_with_extra_units_scores_near_1(factors):
    rng = np.random.default_rng(1)
    copy = factors[:, [3, 0, 4, 1, 2]] * np.array([-2.0, 0.5, 3.0, 1.0, -0.1]) + 7.0
    codes = np.concatenate([copy, 1e-3 * rng.normal(size=(len(factors), 3))], axis=1)  # three collapsed units
    scores = disentanglement_scores(codes, factors)
    assert scores["mig"] > 0.95
    assert scores["dci_disentanglement"] > 0.95


def test_a_random_code_scores_near_0(factors):
    codes = np.random.default_rng(2).normal(size=(len(factors), 10))
    scores = disentanglement_scores(codes, factors)
    assert scores["mig"] < 0.05
    assert scores["dci_disentanglement"] < 0.05 and scores["dci_completeness"] < 0.05
    assert scores["dci_informativeness"] < 0.3  # guessing uniformly: the mean of 1/size over the factors, 0.15


def test_mixing_two_factors_in_one_unit_scores_lower_than_a_clean_code(factors):
    clean = factors.astype(float)
    mixed = clean.copy()
    mixed[:, 3] = factors[:, 3] * 16 + factors[:, 4]  # x and y in one unit: it still tells both
    mixed[:, 4] = np.random.default_rng(3).normal(size=len(factors))
    clean_scores, mixed_scores = disentanglement_scores(clean, factors), disentanglement_scores(mixed, factors)
    assert mixed_scores["mig"] < clean_scores["mig"] - 0.15
    assert mixed_scores["dci_disentanglement"] < clean_scores["dci_disentanglement"] - 0.1
    assert mixed_scores["dci_informativeness"] > 0.95  # as informative, less disentangled


def test_dci_of_known_importance_matrices():
    assert dci_from_importance(np.eye(4)) == pytest.approx((1.0, 1.0))
    assert dci_from_importance(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-12)
    # Units 0 and 1 tell factor 0 (1/3 of their importance) and factor 1 (2/3); unit 2 factor 0 alone.
    # Disentanglement: units weighted 0.375, 0.375, 0.25; rows' entropies (base 2) H(1/3, 2/3), H(1/3, 2/3), 0.
    # Completeness: factors weighted 0.5 each; columns' entropies (base 3) H(1/4, 1/4, 1/2), H(1/2, 1/2, 0).
    h_third = -(math.log(1 / 3) / 3 + 2 * math.log(2 / 3) / 3) / math.log(2)
    by_hand_d = 0.75 * (1 - h_third) + 0.25
    by_hand_c = 0.5 * (1 - 1.5 * math.log(2) / math.log(3)) + 0.5 * (1 - math.log(2) / math.log(3))
    disentanglement, completeness = dci_from_importance(np.array([[0.25, 0.5], [0.25, 0.5], [0.5, 0.0]]))
    assert disentanglement == pytest.approx(by_hand_d)  # 0.311
    assert completeness == pytest.approx(by_hand_c)  # 0.211


def test_dci_is_deterministic(factors):
    codes = factors + np.random.default_rng(4).normal(size=factors.shape)
    assert dci(codes, factors, seed=0) == dci(codes, factors, seed=0)


def test_bad_shapes_and_missing_factors_are_refused(factors):
    with pytest.raises(DataError, match=r"codes \(N, D\) and factors \(N, F\)"):
        disentanglement_scores(factors[:10].astype(float), factors[:9])

    class Plain:
        name, has_factors = "digits", False

    with pytest.raises(DataError, match="--disentanglement: dataset 'digits' has no ground-truth factors"):
        require_factors(Plain(), "--disentanglement")
