"""Disentanglement metrics: how well single latent units capture single ground-truth factors of
variation, from codes `(N, D)` (posterior means) and factors `(N, F)` (int values). Each follows
disentanglement_lib's definition (Locatello et al. 2019), computed on the codes of a fixed set
of examples rather than on fresh draws from a generator (see `factor_groups`).

- MIG, the mutual information gap (Chen et al. 2018): each unit discretised into 20 equal-width
  bins, its mutual information with each factor; per factor, the gap between the two units most
  informative about it divided by the factor's entropy, averaged over factors.
- DCI (Eastwood & Williams 2018): a classifier per factor predicts it from the code; the
  importance of each unit for each factor, R (D, F), gives disentanglement (1 - entropy of each
  unit's row, base F, weighted by the units' share of all importance), completeness (1 - entropy
  of each factor's column, base D, weighted likewise) and informativeness (held-out accuracy).
  The classifiers are gradient-boosted trees by default, as disentanglement_lib computes DCI
  (scikit-learn's GradientBoostingClassifier with its defaults); `dci_model="forest"` uses
  random forests instead, which are quicker but give a different number on the same codes.
- beta-VAE score (Higgins et al. 2017): for a factor k drawn at random, 64 pairs of examples
  that share k's value; the mean absolute difference of their codes is one point, labelled k.
  A logistic regression learns k from the points; the score is its accuracy on new points.
- FactorVAE score (Kim & Mnih 2018): the codes divided by their standard deviation over all
  examples (units below 0.05 dropped); for a factor k drawn at random, 64 examples sharing k's
  value vote for the unit of least variance among them; each unit is assigned the factor it got
  most votes for, and the score is the share of new votes that this majority classifier gets right.
- SAP (Kumar et al. 2018): for each unit and factor, the held-out accuracy of a linear SVM
  (C = 0.01, balanced classes) predicting the factor from that unit alone; per factor, the gap
  between its two best units, averaged over factors.
- Modularity (Ridgeway & Mozer 2018): from the units' mutual information with the factors (as
  for MIG), 1 - the share of each unit's squared information that is not about its main factor,
  scaled by F - 1, averaged over units (0 for a unit that tells nothing).

Every score lies in [0, 1], higher is better.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.errors import DataError

BINS = 20  # equal-width bins per unit, as disentanglement_lib discretises codes for MIG
TREES = 20
HELD_OUT = 0.2  # of the codes, for DCI's informativeness
METRICS = (
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "beta_vae_score",
    "factor_vae_score",
    "sap",
    "modularity",
)
DCI_MODELS = ("gbt", "forest")
GROUP_SIZE = 64  # examples per point or vote (disentanglement_lib's batch_size)
TRAIN_POINTS, EVAL_POINTS = 10_000, 5_000  # disentanglement_lib's num_train, num_eval
PRUNE_BELOW = 0.05  # the FactorVAE score drops units whose standard deviation is below this
SVM_C = 0.01


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


def held_out_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a seeded HELD_OUT share of `count` examples held out."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, int(round(HELD_OUT * count)))
    return order[held:], order[:held]


def factor_classifier(model: str, seed: int) -> Any:
    """DCI's classifier of one factor from the code: gradient-boosted trees (disentanglement_lib's
    choice and defaults) or a random forest that offers every unit at every split."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    if model == "gbt":
        return GradientBoostingClassifier(random_state=seed)
    if model == "forest":
        # max_features=None: the unit that tells the factor takes the importance, rather than
        # whichever units a split happened to be offered.
        return RandomForestClassifier(n_estimators=TREES, max_features=None, random_state=seed, n_jobs=1)
    raise DataError(f"dci_model: unknown model {model!r}; known: {', '.join(DCI_MODELS)}")


def importance_matrix(
    codes: np.ndarray, factors: np.ndarray, seed: int = 0, model: str = "gbt"
) -> tuple[np.ndarray, np.ndarray]:
    """(R `(D, F)`: each unit's importance for predicting each factor, each column summing to 1
    or 0; the held-out accuracy of each factor's classifier `(F,)`)."""
    train, test = held_out_split(len(codes), seed)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = np.zeros(factors.shape[1])
    for f, factor in enumerate(factors.T):
        if len(np.unique(factor[train])) < 2:  # nothing to predict: no unit is important for it
            accuracy[f] = 1.0
            continue
        classifier = factor_classifier(model, seed)
        classifier.fit(codes[train], factor[train])
        importance[:, f] = np.abs(classifier.feature_importances_)
        accuracy[f] = classifier.score(codes[test], factor[test])
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


def dci(codes: np.ndarray, factors: np.ndarray, seed: int = 0, model: str = "gbt") -> dict[str, float]:
    """DCI disentanglement, completeness and informativeness of codes for the factors."""
    importance, accuracy = importance_matrix(np.asarray(codes, np.float64), np.asarray(factors), seed, model)
    disentanglement, completeness = dci_from_importance(importance)
    return {
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness": float(np.mean(accuracy)),
    }


class FactorGroups:
    """The examples grouped by the value of each factor, to draw examples that share one factor's
    value while the others vary, as disentanglement_lib draws them from its generator. Here they
    come from a fixed set: a factor value is chosen with its share of the examples (a uniform
    product of factors, as dsprites is, makes that uniform), and only values held by at least two
    examples are drawn."""

    def __init__(self, factors: np.ndarray):
        # Per factor: the examples sorted by its value, and where each value's group starts and
        # how many it holds (groups of one left out).
        self.groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for factor in np.asarray(factors).T:
            order = np.argsort(factor, kind="stable")
            _, starts, counts = np.unique(factor[order], return_index=True, return_counts=True)
            shared = counts >= 2
            self.groups.append((order, starts[shared], counts[shared]))

    def drawable(self) -> list[int]:
        """The factors that have a value shared by two examples or more."""
        return [k for k, (_, starts, _) in enumerate(self.groups) if len(starts)]

    def choose_groups(self, rng: np.random.Generator, factor: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts, counts) of `size` value groups of `factor`, each drawn with its share of the examples."""
        _, starts, counts = self.groups[factor]
        chosen = rng.choice(len(counts), size=size, p=counts / counts.sum())
        return starts[chosen], counts[chosen]

    def draw(self, rng: np.random.Generator, factor: int, size: int) -> np.ndarray:
        """Up to `size` distinct examples that share a value of `factor` (fewer when no more share it)."""
        (start,), (count,) = self.choose_groups(rng, factor, 1)
        return self.groups[factor][0][start + rng.choice(count, size=min(size, count), replace=False)]

    def pairs(self, rng: np.random.Generator, factor: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """`size` pairs of distinct examples, each pair sharing a value of `factor` (one value per pair)."""
        order = self.groups[factor][0]
        starts, counts = self.choose_groups(rng, factor, size)
        first = rng.integers(0, counts)
        second = (first + rng.integers(1, counts)) % counts  # any other member of the same group
        return order[starts + first], order[starts + second]


def beta_vae_points(
    codes: np.ndarray, groups: FactorGroups, rng: np.random.Generator, count: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` points of the beta-VAE score: each the mean |z1 - z2| of `size` pairs sharing the
    value of a factor drawn at random, labelled with that factor."""
    labels = rng.choice(groups.drawable(), size=count)
    points = np.empty((count, codes.shape[1]))
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        first, second = groups.pairs(rng, int(k), len(rows) * size)
        differences = np.abs(codes[first] - codes[second]).reshape(len(rows), size, -1)
        points[rows] = differences.mean(axis=1)
    return points, labels


def beta_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    seed: int = 0,
    size: int = GROUP_SIZE,
    train_points: int = TRAIN_POINTS,
    eval_points: int = EVAL_POINTS,
) -> float:
    """Higgins et al.'s score: the held-out accuracy of a logistic regression telling which
    factor a group of pairs shared from the mean absolute difference of their codes."""
    from sklearn.linear_model import LogisticRegression

    groups, rng = FactorGroups(factors), np.random.default_rng(seed)
    train = beta_vae_points(codes, groups, rng, train_points, size)
    evaluation = beta_vae_points(codes, groups, rng, eval_points, size)
    if len(np.unique(train[1])) < 2:
        return 1.0  # one factor to tell: nothing to get wrong
    classifier = LogisticRegression(max_iter=1000).fit(*train)
    return float(classifier.score(*evaluation))


def factor_vae_votes(
    codes: np.ndarray, groups: FactorGroups, rng: np.random.Generator, count: int, size: int, scale: np.ndarray
) -> np.ndarray:
    """Votes `(D, F)`: how often the unit of least normalised variance within `size` examples that
    share the value of factor k was unit d."""
    votes = np.zeros((codes.shape[1], len(groups.groups)), np.int64)
    for k in rng.choice(groups.drawable(), size=count):
        members = groups.draw(rng, int(k), size)
        unit = np.argmin(np.var(codes[members], axis=0, ddof=1) / scale)
        votes[unit, k] += 1
    return votes


def factor_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    seed: int = 0,
    size: int = GROUP_SIZE,
    train_votes: int = TRAIN_POINTS,
    eval_votes: int = EVAL_POINTS,
) -> float:
    """Kim & Mnih's score: the accuracy of the majority-vote classifier from a unit of least
    (normalised) variance to the factor held fixed. 0 when every unit has collapsed."""
    variance = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(variance) >= PRUNE_BELOW
    if not active.any():
        return 0.0
    codes, variance = codes[:, active], variance[active]
    groups, rng = FactorGroups(factors), np.random.default_rng(seed)
    train = factor_vae_votes(codes, groups, rng, train_votes, size, variance)
    evaluation = factor_vae_votes(codes, groups, rng, eval_votes, size, variance)
    assigned = np.argmax(train, axis=1)  # each unit's majority factor
    return float(np.sum(evaluation[np.arange(len(assigned)), assigned]) / np.sum(evaluation))


def sap_matrix(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> np.ndarray:
    """S `(D, F)`: the held-out accuracy of a linear SVM predicting factor f from unit d alone."""
    from sklearn.svm import LinearSVC

    train, test = held_out_split(len(codes), seed)
    scores = np.zeros((codes.shape[1], factors.shape[1]))
    for d, unit in enumerate(codes.T):
        for f, factor in enumerate(factors.T):
            if len(np.unique(factor[train])) < 2:
                continue  # a factor with one value: no unit is scored for it
            svm = LinearSVC(C=SVM_C, class_weight="balanced").fit(unit[train, None], factor[train])
            scores[d, f] = np.mean(svm.predict(unit[test, None]) == factor[test])
    return scores


def top_two_gap(scores: np.ndarray) -> float:
    """The gap between the best and second-best unit of each factor (column), averaged."""
    ranked = np.sort(scores, axis=0)
    return float(np.mean(ranked[-1] - ranked[-2])) if len(scores) > 1 else float(np.mean(ranked[-1]))


def sap(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> float:
    """Kumar et al.'s separated attribute predictability (discrete factors, as disentanglement_lib)."""
    return top_two_gap(sap_matrix(codes, factors, seed))


def modularity_from_information(information: np.ndarray) -> float:
    """Ridgeway & Mozer's modularity of a mutual information matrix `(D, F)`."""
    squared = np.square(information)
    largest = squared.max(axis=1)
    spill = (squared.sum(axis=1) - largest) / np.where(largest > 0, largest * (squared.shape[1] - 1), 1.0)
    return float(np.mean(np.where(largest > 0, 1.0 - spill, 0.0)))


def modularity(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> float:
    """Modularity of the codes: each unit's information about one factor only."""
    return modularity_from_information(mutual_information_matrix(discretise(codes, bins), factors))


def check_examples(codes: np.ndarray, factors: np.ndarray) -> None:
    """Refuse codes and factors that the metrics cannot score, naming what is wrong."""
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise DataError(
            f"disentanglement metrics need codes (N, D) and factors (N, F); got {codes.shape} and {factors.shape}"
        )
    if len(codes) < GROUP_SIZE:
        raise DataError(
            f"disentanglement metrics need at least {GROUP_SIZE} examples (the beta-VAE and FactorVAE "
            f"scores draw groups of {GROUP_SIZE}), got {len(codes)}"
        )
    if not FactorGroups(factors).drawable():
        raise DataError(
            "the beta-VAE and FactorVAE scores need two examples or more that share a factor's value; "
            f"no value of any factor is shared among these {len(codes)} examples"
        )


def disentanglement_scores(
    codes: np.ndarray, factors: np.ndarray, seed: int = 0, dci_model: str = "gbt"
) -> dict[str, Any]:
    """Every metric (METRICS) of codes `(N, D)` against factors `(N, F)`, with the number of
    examples used."""
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors)
    check_examples(codes, factors)
    return {
        "mig": mig(codes, factors),
        **dci(codes, factors, seed, dci_model),
        "beta_vae_score": beta_vae_score(codes, factors, seed),
        "factor_vae_score": factor_vae_score(codes, factors, seed),
        "sap": sap(codes, factors, seed),
        "modularity": modularity(codes, factors),
        "dci_model": dci_model,
        "disentanglement_examples": int(len(codes)),
    }
