"""Comparing results: mean, spread and confidence intervals over seeds, a Markdown
table with the best per column marked, and a report with plots (matplotlib)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import yaml

from zoo.evaluation.results import is_run_directory, located_results, read_results, results_file

# (column, record key, sign, better): sign turns log-likelihoods into positive nats.
COLUMNS = (
    ("-ELBO", "elbo", -1, "min"),
    ("NLL (IS)", "log_likelihood", -1, "min"),
    ("cond. NLL (IS)", "conditional_log_likelihood", -1, "min"),
    ("cond. NLL (prior MC)", "conditional_log_likelihood_prior", -1, "min"),
    ("bits/dim", "bits_per_dim", 1, "min"),
    ("recon. error", "reconstruction_error", 1, "min"),
    ("KL", "kl", 1, None),
    ("active units", "active_units", 1, None),
    ("class accuracy", "class_accuracy", 1, "max"),
    ("sample diversity", "sample_diversity", 1, None),
    ("codebook perplexity", "codebook_perplexity", 1, None),
    ("codebook usage", "codebook_usage", 1, "max"),
    ("MIG", "mig", 1, "max"),
    ("DCI", "dci_disentanglement", 1, "max"),
    ("beta-VAE score", "beta_vae_score", 1, "max"),
    ("FactorVAE score", "factor_vae_score", 1, "max"),
    ("SAP", "sap", 1, "max"),
    ("modularity", "modularity", 1, "max"),
    ("s / epoch", "seconds_per_epoch", 1, "min"),
)


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and, from 3 values on, the 95% t-interval half-width."""
    from scipy import stats

    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(values)
    if n == 0:
        return {"n": 0}
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if n > 1 else 0.0
    summary = {"n": n, "mean": mean, "std": std}
    if n >= 3:
        summary["ci95"] = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return summary


def group(records: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Records by (dataset, task, variant), in first-seen order."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for record in records:
        groups[(record["dataset"], record["task"], record["variant"])].append(record)
    return dict(groups)


def cell_summary(rows: list[dict], key: str, sign: int) -> dict:
    """The summary of one column over a variant's seeds; "undefined" when every run reported the
    metric as not applicable (None, e.g. the IS log-likelihood of a VQ-VAE), with the reason
    the runs gave under KEY_undefined (zoo.evaluation.evaluate), if any."""
    values = [sign * r[key] for r in rows if r.get(key) is not None]
    if not values and any(key in r for r in rows):
        reasons = [r[f"{key}_undefined"] for r in rows if r.get(f"{key}_undefined")]
        return {"n": 0, "undefined": True, "reason": reasons[0] if reasons else None}
    return summarize(values)


SUPERSCRIPT_DIGITS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class Footnotes:
    """The reasons of a table's "n/a" cells, numbered in order of first use: each reason is
    written once, under the tables, however many cells it explains."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return str(self.reasons.index(reason) + 1).translate(SUPERSCRIPT_DIGITS)

    def text(self) -> str:
        return "\n\n".join(f"{self.mark(reason)} n/a: {reason.rstrip('.')}." for reason in self.reasons)


def format_cell(summary: dict, footnotes: Footnotes) -> str:
    """A cell's text: mean ± CI; "n/a" with a footnote mark for a metric that does not apply
    (never a number); "not defined" for one a record left null without a reason."""
    if summary.get("undefined"):
        return "not defined" if summary.get("reason") is None else "n/a" + footnotes.mark(summary["reason"])
    if not summary.get("n"):
        return "-"
    text = f"{summary['mean']:.2f}"
    if "ci95" in summary:
        text += f" ± {summary['ci95']:.2f}"
    elif summary["n"] == 2:
        text += f" (sd {summary['std']:.2f})"
    return text


def settings(records: list[dict]) -> dict[tuple[str, str], dict]:
    """The table's content, per (dataset, task): its columns, and per variant the runs and each
    column's summary over seeds, with the best variant per column (where a column has a better)."""
    by_setting: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(dict)
    for (dataset, task, variant), rows in group(records).items():
        by_setting[(dataset, task)][variant] = rows
    content = {}
    for setting, variants in by_setting.items():
        columns = [c for c in COLUMNS if any(c[1] in r for rows in variants.values() for r in rows)]
        cells = {v: {c[0]: cell_summary(rows, c[1], c[2]) for c in columns} for v, rows in variants.items()}
        best = {}
        for name, _, _, better in columns:
            means = {v: cells[v][name]["mean"] for v in variants if cells[v][name].get("n")}
            if better and len(means) > 1:
                best[name] = (min if better == "min" else max)(means, key=lambda v: means[v])
        content[setting] = {"columns": columns, "variants": variants, "cells": cells, "best": best}
    return content


def table_rows(records: list[dict]) -> list[dict]:
    """The table as rows (the Python API's `zoo.compare`): dataset, task, variant, seeds, and per
    column its mean in the table's units (None where not defined or missing) and `COLUMN ci95`."""
    rows = []
    for (dataset, task), content in settings(records).items():
        for variant, runs_of_variant in content["variants"].items():
            row: dict = {"dataset": dataset, "task": task, "variant": variant, "seeds": len(runs_of_variant)}
            for name, *_ in content["columns"]:
                summary = content["cells"][variant][name]
                row[name] = summary.get("mean")
                row[f"{name} ci95"] = summary.get("ci95")
            rows.append(row)
    return rows


def table(records: list[dict]) -> str:
    """Markdown tables, one per (dataset, task): mean ± 95% CI over seeds, best in bold; the
    reasons of "n/a" cells as footnotes after the last table."""
    blocks = []
    footnotes = Footnotes()
    for (dataset, task), content in settings(records).items():
        columns, cells, best = content["columns"], content["cells"], content["best"]
        lines = [
            f"**{dataset}, {task}** (mean ± 95% CI over seeds where 3 or more; nats per example)",
            "",
            "| variant | seeds | " + " | ".join(c[0] for c in columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for variant, rows in content["variants"].items():
            row = []
            for name, *_ in columns:
                text = format_cell(cells[variant][name], footnotes)
                row.append(f"**{text}**" if best.get(name) == variant else text)
            lines.append(f"| {variant} | {len(rows)} | " + " | ".join(row) + " |")
        blocks.append("\n".join(lines))
    if footnotes.reasons:
        blocks.append(footnotes.text())
    return "\n\n".join(blocks)


def suite_files(results: Iterable[Path]) -> list[Path]:
    """The suite.yaml that `zoo bench` copies beside each results.jsonl, where present."""
    files = [results_file(p) for p in map(Path, results) if not is_run_directory(p)]
    return [p.parent / "suite.yaml" for p in files if (p.parent / "suite.yaml").is_file()]


def published_table(suite_files: Iterable[Path]) -> str:
    """The published numbers a suite file lists, to print beside ours."""
    lines = []
    for path in suite_files:
        suite = yaml.safe_load(Path(path).read_text()) or {}
        for entry in suite.get("published") or []:
            lines.append(
                f"| {entry['model']} | {entry['metric']} | {entry['value']} | {entry['source']} | {entry.get('protocol', '')} |"
            )
    if not lines:
        return ""
    return "\n".join(["| published model | metric | value | source | protocol |", "|---|---|---|---|---|", *lines])


def elbo_not_applicable(rows: list[dict]) -> bool:
    """Whether the runs declared their ELBO not applicable (a gsnn's: its encoder is never trained)."""
    return all(r.get("elbo") is None and r.get("elbo_undefined") for r in rows)


def learning_curves(records: list[dict], results_dirs: dict[str, Path], path: Path) -> Optional[Path]:
    """Validation ELBO against step, one line per variant (mean over seeds); variants whose
    ELBO does not apply are left out (their numbers would only stretch the axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.training import runs
    from zoo.evaluation.figure_data import best_validation, learning_curve_series

    figure, axis = plt.subplots(figsize=(7, 4.5))
    plotted = False
    for (dataset, task, variant), rows in group(records).items():
        if elbo_not_applicable(rows):
            continue
        curves = []
        for record in rows:
            workdir = results_dirs.get(record["run"])
            if workdir is None:
                continue
            validation = learning_curve_series(runs.read_metrics(workdir)).get("validation -ELBO")  # (steps, -ELBO)
            if validation is not None:
                curves.append(validation)
        if not curves:
            continue
        length = min(len(steps) for steps, _ in curves)
        steps = curves[0][0][:length]
        values = np.mean([negative_elbo[:length] for _, negative_elbo in curves], axis=0)
        (line,) = axis.plot(
            steps,
            values,
            marker="o" if length < 60 else None,
            markersize=3,
            label=f"{variant} ({dataset}, {task}), mean of {len(curves)}",
        )
        for record in rows:  # each seed's best checkpoint, a star on the curve
            best = (
                best_validation(runs.read_metrics(results_dirs[record["run"]]))
                if record["run"] in results_dirs
                else None
            )
            if best is not None:
                axis.plot(
                    [best["step"]], [-best["elbo"]], marker="*", markersize=12, color=line.get_color(), linestyle="none"
                )
        plotted = True
    if not plotted:
        plt.close(figure)
        return None
    axis.set_xlabel("training step (stars: the best checkpoint of each run)")
    axis.set_ylabel("validation -ELBO (nats)")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def write_report(results: list[Path], out: Path, registry=None, samples: bool = True) -> Path:
    """A Markdown report: our table, the published numbers, learning curves, and each variant's figures (zoo.evaluation.plots)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records, run_dirs = [], {}
    for record, workdir in located_results(results):
        records.append(record)
        run_dirs[record["run"]] = workdir
    suites = suite_files(results)
    parts = ["# Results", "", table(records)]
    published = published_table(suites)
    if published:
        parts += ["", "## Published numbers", "", published]
    if any("epochs" in r for r in records):
        parts += ["", "## Runs", "", run_table(records)]
    curve = learning_curves(records, run_dirs, out / "learning_curves.png")
    if curve:
        parts += ["", "## Learning curves", "", f"![learning curves]({curve.name})"]
        left_out = sorted({variant for (_, _, variant), rows in group(records).items() if elbo_not_applicable(rows)})
        if left_out:
            parts += [
                "",
                f"Not drawn: {', '.join(left_out)}, whose ELBO does not apply (see the footnotes of the table).",
            ]
    if samples and registry is not None:
        parts += run_figures(records, run_dirs, out, registry)
    report = out / "report.md"
    report.write_text("\n".join(parts) + "\n")
    return report


def print_comparison(results: list[Path], report: Optional[Path], registry=None, samples: bool = True) -> None:
    """What `zoo compare` and `zoo bench` print: the table over seeds with its footnotes, the
    suites' published numbers, and, given a `report` directory, where the report was written."""
    print(table(read_results(results)))
    published = published_table(suite_files(results))
    if published:
        print("\n" + published)
    if report is not None:
        print(f"\nreport: {write_report(results, report, registry, samples=samples)}")


def run_table(records: list[dict]) -> str:
    """One row per run: how long it trained, where its best checkpoint was, which checkpoint was evaluated.

    Two times: the training time from the run's own log (epochs x its logged seconds per
    epoch: every session of a run resumed across several, compilation included) and the
    wall time of the process that finished it (its last part of training and the evaluation)."""
    lines = [
        "| run | epochs trained | best epoch | ended by | evaluated | s / epoch | training time (log, all sessions) "
        "| wall time of the last process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        ended = (
            "early stopping"
            if r.get("stopped_early")
            else "time limit (not a result)"
            if r.get("stopped_by_time_limit")
            else "budget"
        )
        wall = f"{r['wall_seconds'] / 3600:.2f} h" if r.get("wall_seconds") else ""
        per_epoch = r.get("seconds_per_epoch", float("nan"))
        logged = per_epoch * r["epochs"] / 3600 if r.get("epochs") and np.isfinite(per_epoch) else None
        lines.append(
            f"| {r['run']} | {r.get('epochs', '')} | {r.get('best_epoch', '')} | {ended} | "
            f"{r.get('checkpoint', 'newest')} (step {r.get('evaluated_step', r.get('steps', ''))}) | "
            f"{per_epoch:.2f} | {'' if logged is None else f'{logged:.2f} h'} | {wall} |"
        )
    return "\n".join(lines)


def run_figures(records: list[dict], run_dirs: dict[str, Path], out: Path, registry) -> list[str]:
    """Report lines with the figures of `zoo plot` for each (dataset, task, variant), from the run
    of its first seed that is here: a result counted as done from another machine's results.jsonl
    (`zoo bench --recorded`) has no run directory to draw from."""
    from zoo.evaluation.plots import plot_run
    from zoo.evaluation.results import is_run_directory

    lines = []
    for (dataset, task, variant), rows in group(records).items():
        held = [row for row in rows if row["run"] in run_dirs and is_run_directory(run_dirs[row["run"]])]
        if not held:
            continue
        run, seed = held[0]["run"], held[0]["seed"]
        workdir = run_dirs[run]
        lines += ["", f"### {variant} ({dataset}, {task}, seed {seed})", ""]
        for path in plot_run(workdir, out / "figures" / run, registry):
            lines.append(f"![{variant}: {path.stem.replace('_', ' ')}](figures/{run}/{path.name})")
    if lines:
        lines = [
            "",
            "## Figures (the first seed of each variant whose run is here)",
            "",
            "Samples (a row per class for CVAEs), test images beside their reconstructions, interpolations, "
            "latent traversals, the latent space by class and the learning curves, as `zoo plot RUN` draws them.",
        ] + lines
    return lines
