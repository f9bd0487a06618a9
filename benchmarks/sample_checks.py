"""Class accuracy and diversity of a class-conditional run's samples, as `zoo bench` records them
(zoo.evaluation.classifier.sample_checks): for runs trained outside a suite, or before the
diversity was recorded.

    .venv/bin/python benchmarks/sample_checks.py RUN [RUN ...] [--per-class 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import zoo
from zoo.evaluation import classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for run_dir in args.runs:
        run = zoo.load(run_dir)
        path = run_dir / "classifiers" / f"{run.experiment.dataset.name}.npz"
        checks = classifier.sample_checks(run.experiment, run.model, path, args.per_class, args.seed)
        print(json.dumps({"run": str(run_dir), **{k: round(v, 4) for k, v in checks.items()}}), flush=True)


if __name__ == "__main__":
    main()
