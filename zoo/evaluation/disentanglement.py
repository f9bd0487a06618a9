"""Disentanglement metrics: how well single latent units capture single ground-truth factors of
variation, from codes `(N, D)` (posterior means) and factors `(N, F)` (int values).

- MIG, the mutual information gap (Chen et al. 2018): each unit discretised into equal-width bins,
  its mutual information with each factor; per factor, the gap between the two units most
  informative about it divided by the factor's entropy, averaged over factors. 1 when each factor
  is captured by one unit alone, 0 when none (or two alike) capture it.
- DCI (Eastwood & Williams 2018): a classifier per factor predicts it from the code; the
  importance of each unit for each factor, R (D, F), gives disentanglement (each unit matters for
  one factor: 1 - entropy of its row, base F, averaged with the units' share of all importance),
  completeness (each factor is told by one unit: 1 - entropy of its column, base D, averaged
  with the factors' shares) and informativeness (the classifiers' accuracy on held-out codes,
  averaged over factors). The classifiers are random forests on all units at every split
  (scikit-learn, impurity importances), which is quick and, unlike a lasso, needs no factor to
  depend linearly on the code; Eastwood & Williams used a lasso and a random forest regressor,
  disentanglement_lib gradient boosting.

Every score lies in [0, 1], higher is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.errors import DataError

BINS = 20  # equal-width bins per unit, as disentanglement_lib discretises codes for MIG
TREES = 20
HELD_OUT = 0.2  # of the codes, for DCI's informativeness
METRICS = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness")


def require_factors(dataset: Any, key: str) -> None:
    """Refuse a request for disentanglement metrics (`key` names it) on a dataset without factors."""
    if not getattr(dataset, "has_factors", False):
        raise DataError(
            f"{key}: dataset {dataset.name!r} has no ground-truth factors to score disentanglement "
            "against (a dataset generated from known factors has them, e.g. dsprites)"
        )


def discretise(codes: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each unit's values `(N, D)` as the index of its equal-width bin over the unit's own range
    (a constant unit falls in one bin)."""
    codes = np.asarray(codes, np.float64)
    columns = []
    for unit in codes.T:
        edges = np.linspace(unit.min(), unit.max(), bins + 1)
        columns.append(np.digitize(unit, edges[1:-1]))
    return np.stack(columns, axis=1)


def entropy(values: np.ndarray) -> float:
    """The entropy (nats) of the empirical distribution of discrete values."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """The mutual information (nats) of two discrete variables from their paired values."""
    _, a_index = np.unique(a, return_inverse=True)
    _, b_index = np.unique(b, return_inverse=True)
    joint = np.zeros((a_index.max() + 1, b_index.max() + 1))
    np.add.at(joint, (a_index.ravel(), b_index.ravel()), 1.0)
    joint /= joint.sum()
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    seen = joint > 0
    return float(np.sum(joint[seen] * np.log(joint[seen] / outer[seen])))


def mutual_information_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(unit d; factor f) for every pair, `(D, F)`, in nats."""
    return np.array([[mutual_information(unit, factor) for factor in factors.T] for unit in discrete_codes.T])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> float:
    """The mutual information gap, averaged over the factors that vary (a factor with one value
    carries no information to capture)."""
    information = mutual_information_matrix(discretise(codes, bins), factors)
    gaps = []
    for column, factor in zip(information.T, factors.T):
        h = entropy(factor)
        if h <= 0:
            continue
        top = np.sort(np.concatenate([column, [0.0]]))[::-1]  # one unit alone: the second best is 0
        gaps.append((top[0] - top[1]) / h)
    if not gaps:
        raise DataError("MIG needs a factor that takes more than one value among the examples")
    return float(np.mean(gaps))


def importance_matrix(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(R `(D, F)`: each unit's importance for predicting each factor, each column summing to 1
    or 0; the held-out accuracy of each factor's classifier `(F,)`)."""
    from sklearn.ensemble import RandomForestClassifier

    order = np.random.default_rng(seed).permutation(len(codes))
    held = max(1, int(round(HELD_OUT * len(codes))))
    test, train = order[:held], order[held:]
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = np.zeros(factors.shape[1])
    for f, factor in enumerate(factors.T):
        # max_features=None: every unit is offered at every split, so the unit that tells the
        # factor takes the importance, rather than whichever units a split happened to be offered.
        forest = RandomForestClassifier(n_estimators=TREES, max_features=None, random_state=seed, n_jobs=1)
        forest.fit(codes[train], factor[train])
        importance[:, f] = forest.feature_importances_
        accuracy[f] = forest.score(codes[test], factor[test])
    return importance, accuracy


def normalised_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """The entropy of each row of probabilities in log base `base` (0 when base is 1)."""
    if base <= 1:
        return np.zeros(len(p))
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(p * np.log(safe), axis=1) / np.log(base)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix R `(D, F)`."""
    total = importance.sum()
    if total <= 0:
        return 0.0, 0.0
    units, factors = importance.shape
    per_unit = importance.sum(axis=1)
    rows = importance / np.where(per_unit > 0, per_unit, 1.0)[:, None]
    disentanglement = np.sum((1.0 - normalised_entropy(rows, factors)) * per_unit / total)
    per_factor = importance.sum(axis=0)
    columns = (importance / np.where(per_factor > 0, per_factor, 1.0)[None]).T
    completeness = np.sum((1.0 - normalised_entropy(columns, units)) * per_factor / total)
    return float(disentanglement), float(completeness)


def dci(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness of codes for the factors."""
    importance, accuracy = importance_matrix(np.asarray(codes, np.float64), np.asarray(factors), seed)
    disentanglement, completeness = dci_from_importance(importance)
    return {
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness": float(np.mean(accuracy)),
    }


def disentanglement_scores(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """MIG and DCI of codes `(N, D)` against factors `(N, F)`, with the number of examples used."""
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise DataError(
            f"disentanglement metrics need codes (N, D) and factors (N, F); got {codes.shape} and {factors.shape}"
        )
    if len(codes) < 10:
        raise DataError(f"disentanglement metrics need at least 10 examples, got {len(codes)}")
    return {"mig": mig(codes, factors), **dci(codes, factors, seed), "disentanglement_examples": int(len(codes))}
