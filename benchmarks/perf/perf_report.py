"""The perf benchmark's Markdown report from its results (run.py writes both)."""

from __future__ import annotations

import statistics
from typing import Optional

# The targets, as figures of this benchmark.
TRAIN_PEAK_TARGET, TRAIN_RATIO_TARGET, TRAIN_TARGET_VARIANTS = 0.75, 2.0, ("perf_vae_mlp", "perf_cvae_mlp")
IS_PEAK_TARGET, IS_RATIO_TARGET, MEMORY_TOLERANCE = 0.80, 1.5, 0.10


def ok(runs: list) -> list:
    """The measurements that finished."""
    return [run for run in runs if "error" not in run]


def median_of(runs: list, key: str) -> Optional[float]:
    """Median over processes of a figure (a list of windows counts as its median)."""
    values = [statistics.median(r[key]) if isinstance(r[key], list) else r[key] for r in ok(runs) if key in r]
    return statistics.median(values) if values else None


def fmt(value: Optional[float], pattern: str = "{:,.0f}") -> str:
    """A number, or a dash where the measurement failed or was not made."""
    return "-" if value is None else pattern.format(value)


def paired_ratios(zoo_runs: list, torch_runs: list) -> list[float]:
    """zoo / torch images/s of each repeat: the two ran one after the other, under the same load."""
    pairs = zip(zoo_runs, torch_runs)
    return [
        median_of([a], "images_per_s") / median_of([b], "images_per_s")
        for a, b in pairs
        if not {"error"} & (a.keys() | b.keys())
    ]


def paired_ratio(zoo_runs: list, torch_runs: list) -> Optional[float]:
    """Median over repeats of zoo / torch, or None where no repeat has both."""
    ratios = paired_ratios(zoo_runs, torch_runs)
    return statistics.median(ratios) if ratios else None


def peak_gflops(results: dict) -> Optional[float]:
    """The machine's jax matmul peak: the best of its measurements (lower ones met other load)."""
    values = [run["jax_gflops"] for run in ok(results["matmul_peaks"])]
    return max(values) if values else None


def header(results: dict) -> list[str]:
    """Command, date, hardware, versions and the matmul peak."""
    env, peaks = results["environment"], ok(results["matmul_peaks"])
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        "# Perf benchmark: vae-zoo against a plain PyTorch reference",
        "",
        f"Command: `{env['command']}`",
        "",
        f"Date: {env['date']}",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, AVX-512 {'yes' if env['avx512'] else 'no'}, float32",
        "",
        f"Versions: {versions}",
        "",
        f"Load average (1 min) at start and end: {env['load_average_at_start']:.1f}, {env['load_average_at_end']:.1f} "
        f"on {env['cores']} cores"
        + (
            " (above the core count: other work shared the machine)"
            if max(env["load_average_at_start"], env["load_average_at_end"]) > env["cores"]
            else ""
        ),
        "",
    ]
    threads = [
        run["threads"] for runs in results["training"].values() for run in ok(runs["torch_eager"]) if "threads" in run
    ]
    if threads:
        lines += [
            f"PyTorch threads: its default, {threads[0]} intra-op (torch.get_num_threads()); "
            "XLA's CPU backend: its default thread pool.",
            "",
        ]
    if not peaks:
        return lines + ["Matmul peak: every measurement failed", ""]
    each = "; ".join(f"numpy {p['numpy_gflops']:.1f}, jax {p['jax_gflops']:.1f}" for p in peaks)
    lines += [
        f"Matmul peak (float32, {peaks[0]['size']}^3, best of 10 calls; measured before each repeat and at the end): "
        f"{each} GFLOP/s. Percentages below are of the best jax figure, {peak_gflops(results):.1f} GFLOP/s.",
        "",
    ]
    return lines


def training_rows(results: dict) -> tuple[list[str], dict]:
    """The training table and, per variant, (percent of peak, zoo/torch) for the targets."""
    peak = peak_gflops(results)
    rows = [
        "| architecture | batch | MFLOP/image (count / XLA) | zoo images/s | zoo % of peak | torch eager images/s "
        "| torch % of peak | zoo / torch eager | torch.compile images/s | zoo first step s | torch.compile first step s "
        "| peak RSS MiB zoo / torch |",
        "|" + "---|" * 12,
    ]
    figures = {}
    for variant, runs in results["training"].items():
        flops = results["training_flops_per_image"][variant]
        zoo, eager, compiled = (median_of(runs[k], "images_per_s") for k in ("zoo", "torch_eager", "torch_compile"))
        share = lambda rate, flops=flops: None if rate is None or not peak else 100 * rate * flops / (peak * 1e9)
        xla = median_of(runs["zoo"], "xla_flops_per_image")
        figures[variant] = (share(zoo), paired_ratio(runs["zoo"], runs["torch_eager"]))
        rows.append(
            " | ".join(
                [
                    f"| {variant}",
                    str(results["batch_size"][variant]),
                    f"{flops / 1e6:.2f} / {fmt(xla and xla / 1e6, '{:.2f}')}",
                    fmt(zoo),
                    fmt(share(zoo), "{:.0f}%"),
                    fmt(eager),
                    fmt(share(eager), "{:.0f}%"),
                    fmt(figures[variant][1], "{:.2f}x"),
                    fmt(compiled),
                    fmt(median_of(runs["zoo"], "first_step_s"), "{:.1f}"),
                    fmt(median_of(runs["torch_compile"], "first_step_s"), "{:.1f}"),
                    f"{fmt(median_of(runs['zoo'], 'peak_rss_mib'))} / {fmt(median_of(runs['torch_eager'], 'peak_rss_mib'))} |",
                ]
            )
        )
    return rows, figures


def is_rows(results: dict) -> tuple[list[str], dict]:
    """The IS evaluation table and the figures its targets need."""
    runs, settings, peak = results["importance_sampling"], results["settings"], peak_gflops(results)
    flops = results["is_flops_per_image"]
    rows = [
        "| side | K | images | images/s | % of peak | zoo / torch | first batch s (compile) | peak RSS MiB | mean log p(x) |",
        "|" + "---|" * 9,
    ]
    zoo_rate = median_of(runs["zoo"], "images_per_s")
    share = lambda rate, k: None if rate is None or not peak else 100 * rate * flops[k] / (peak * 1e9)
    for side, key, k in (
        ("zoo", "zoo", "is_samples"),
        ("torch", "torch", "is_samples"),
        ("zoo", "zoo_small_k", "is_small_samples"),
    ):
        rate = median_of(runs[key], "images_per_s")
        rows.append(
            " | ".join(
                [
                    f"| {side}",
                    str(settings[k]),
                    str(settings["is_images"]),
                    fmt(rate, "{:.1f}"),
                    fmt(share(rate, k), "{:.0f}%"),
                    fmt(paired_ratio(runs["zoo"], runs["torch"]), "{:.2f}x") if key == "zoo" else "",
                    fmt(median_of(runs[key], "first_batch_s"), "{:.1f}"),
                    fmt(median_of(runs[key], "peak_rss_mib")),
                    fmt(median_of(runs[key], "mean_log_likelihood"), "{:.1f}") + " |",
                ]
            )
        )
    memory = (median_of(runs["zoo"], "peak_rss_mib"), median_of(runs["zoo_small_k"], "peak_rss_mib"))
    return rows, {
        "share": share(zoo_rate, "is_samples"),
        "ratio": paired_ratio(runs["zoo"], runs["torch"]),
        "memory": memory,
    }


def repeat_lines(results: dict) -> list[str]:
    """Per architecture, the images/s of each repeat, zoo and torch eager, to show the spread."""
    each = lambda runs: ", ".join(fmt(median_of([r], "images_per_s")) if "error" not in r else "failed" for r in runs)
    return [
        f"- {variant}: zoo {each(runs['zoo'])}; torch eager {each(runs['torch_eager'])} images/s per repeat"
        for variant, runs in results["training"].items()
    ]


def verdict(value: Optional[float], target: float) -> str:
    """'met' or 'not met' (or 'not measured')."""
    return "not measured" if value is None else ("met" if value >= target else "not met")


def targets(train: dict, evaluation: Optional[dict], settings: dict) -> list[str]:
    """The issue's targets against this run's figures."""
    lines = ["## Targets", ""]
    for variant in TRAIN_TARGET_VARIANTS:
        share, times = train.get(variant, (None, None))
        lines.append(
            f"- training {variant}: {fmt(share, '{:.0f}%')} of peak (target 75%: {verdict(share, 100 * TRAIN_PEAK_TARGET)}), "
            f"{fmt(times, '{:.2f}x')} PyTorch eager (target 2x: {verdict(times, TRAIN_RATIO_TARGET)})"
        )
    if evaluation:
        share, times, (big, small) = evaluation["share"], evaluation["ratio"], evaluation["memory"]
        lines.append(
            f"- IS evaluation: {fmt(share, '{:.0f}%')} of peak (target 80%: {verdict(share, 100 * IS_PEAK_TARGET)}), "
            f"{fmt(times, '{:.2f}x')} PyTorch (target 1.5x: {verdict(times, IS_RATIO_TARGET)})"
        )
        same = None if big is None or small is None else abs(big - small) <= MEMORY_TOLERANCE * small
        lines.append(
            f"- IS peak memory independent of K: {fmt(small)} MiB at K={settings['is_small_samples']}, "
            f"{fmt(big)} MiB at K={settings['is_samples']} "
            f"({'not measured' if same is None else 'met' if same else 'not met'}, within 10%)"
        )
    return lines + [""]


def failures(results: dict) -> list[str]:
    """One line per measurement that did not finish."""
    lines = []
    for section in ("training", "importance_sampling"):
        for name, sides in results.get(section, {}).items():
            groups = sides.items() if isinstance(sides, dict) else [("", sides)]
            for side, runs in groups:
                lines += [f"- {section} {name} {side}: {run['error']}" for run in runs if "error" in run]
    return ["## Failed measurements", "", *lines, ""] if lines else []


def markdown(results: dict) -> str:
    """The whole report."""
    settings = results["settings"]
    train_table, train = training_rows(results)
    lines = header(results) + [
        "## Training",
        "",
        f"Images/s over {settings['windows']} windows of {settings['steps']} steps after "
        f"{settings['warmup']} warm-up steps, median over {settings['repeats']} repeat(s), "
        "each in its own process; torch.compile once per architecture. zoo / torch is the median "
        "over repeats of the ratio within a repeat (the two ran back to back).",
        "",
        *train_table,
        "",
        *repeat_lines(results),
        "",
    ]
    evaluation = None
    if "importance_sampling" in results:
        is_table, evaluation = is_rows(results)
        lines += [
            "## Importance-sampled log-likelihood (perf_vae_mlp, untrained weights)",
            "",
            f"{settings['is_images']} test images in batches of 100, K samples in chunks of "
            f"{settings.get('is_chunk', 250)} on both sides; each side has its own random initial weights, so "
            "their log p(x) differ (tests/test_perf_reference.py checks both compute the same estimate on the same "
            "weights); % of peak counts the decoder once per sample and the encoder once per image.",
            "",
            *is_table,
            "",
        ]
    return "\n".join(lines + targets(train, evaluation, settings) + failures(results))
