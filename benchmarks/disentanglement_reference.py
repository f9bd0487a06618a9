"""The disentanglement suite's metrics on codes whose answer is known, on the suite's own test
split (its 2000 images' ground-truth factors): the floor and ceiling the trained models' scores
sit between, since some metrics (modularity, the beta-VAE and FactorVAE scores) are far from 0
for a code that holds nothing.

    .venv/bin/python benchmarks/disentanglement_reference.py [--suite disentanglement] [--units 10]

Prints one JSON line per reference code:
- `noise`: `units` independent standard normal units;
- `copied factors`: each factor standardised in one unit, the rest noise (a perfectly
  disentangled code, with as many units as the models);
- `copied factors, noise 0.3`: the same with Gaussian noise of standard deviation 0.3 added to
  every unit;
- `mixed`: every unit a random mixture of all the factors (informative, entangled).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import zoo
from zoo.core.assembly import assemble
from zoo.core.plugin_manager import default_registry
from zoo.evaluation.disentanglement import disentanglement_scores
from zoo.evaluation.bench import load_suite


def reference_codes(factors: np.ndarray, units: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    count, num_factors = factors.shape
    standardised = (factors - factors.mean(0)) / (factors.std(0) + 1e-12)
    copied = rng.normal(size=(count, units))
    copied[:, :num_factors] = standardised
    return {
        "noise": rng.normal(size=(count, units)),
        "copied factors": copied,
        "copied factors, noise 0.3": copied + 0.3 * rng.normal(size=(count, units)),
        "mixed": standardised @ rng.normal(size=(num_factors, units)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="disentanglement")
    parser.add_argument("--units", type=int, default=10, help="units of each code (the suite's latent size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    registry = default_registry()
    book = zoo.RecipeBook([zoo.default_registry_path()])
    try:
        suite = load_suite(args.suite, book)
    except zoo.ZooError as exc:  # an unknown or broken suite: one line, exit 2
        parser.error(f"--suite: {exc}")
    recipe = book.resolve(suite.variants[0], registry)
    split = assemble(recipe, registry, check_values=False).dataset.test
    if split.factors is None:
        parser.error(f"--suite: {args.suite}'s dataset has no ground-truth factors to score codes against")
    examples = suite.evaluation.limit or len(split.factors)
    factors = np.asarray(split.factors[:examples])
    for name, codes in reference_codes(factors, args.units, args.seed).items():
        scores = disentanglement_scores(codes, factors, seed=args.seed)
        print(json.dumps({"code": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in scores.items()}}))


if __name__ == "__main__":
    main()
