"""`zoo bench` and `zoo compare`: a suite of runs, and the table and report of their results,
each command beside the function that builds its parser."""

from __future__ import annotations

import sys
from pathlib import Path

from zoo.cli.common import output_dir, recipe_book
from zoo.cli.parser import Subcommands


def add_bench_parser(commands: Subcommands) -> None:
    bench = commands.add_parser("bench", help="run a suite: variants x datasets x tasks x seeds (resumable)")
    bench.add_argument(
        "suite", help="a suite file, or the name of a shipped suite (quick, quadrants, ...; zoo/suites/)"
    )
    bench.add_argument("--out", help="output directory (default runs/bench/SUITE)")
    bench.add_argument("--data-dir")
    bench.add_argument("--progress", action="store_true", help="show a progress bar per run")
    bench.add_argument(
        "--variants",
        help="run only these variants of the suite, comma-separated "
        "(several processes can share one --out, each with its own variants)",
    )
    bench.add_argument(
        "--recorded",
        metavar="RESULTS",
        help="a results.jsonl written earlier (one committed to git, say): its runs count as done and "
        "only the others are trained, as on the machine that wrote it",
    )
    bench.add_argument(
        "--report", help="also write the report of zoo compare (report.md and its plots) to this directory"
    )


def cmd_bench(args, registry) -> None:
    from zoo.evaluation.bench import adopt_recorded_results, load_suite, run_suite
    from zoo.evaluation.report import print_comparison

    book = recipe_book(args)
    suite = load_suite(args.suite, book)
    out = output_dir(Path(args.out or Path("runs") / "bench" / suite.name), "--out")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    report = output_dir(Path(args.report), "--report") if args.report else None
    if args.recorded:
        adopted = adopt_recorded_results(suite, out, Path(args.recorded), log=lambda line: print(line, file=sys.stderr))
        print(f"zoo: {adopted} run(s) of {args.recorded} counted as done", file=sys.stderr)
    run_suite(
        suite,
        out,
        book,
        registry,
        data_dir=args.data_dir,
        progress=args.progress,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        variants=variants,
    )
    print_comparison([out / "results.jsonl"], report, registry)  # the table once: `make run` is this one command
    print(f"\nresults: {out / 'results.jsonl'}")


def add_compare_parser(commands: Subcommands) -> None:
    compare = commands.add_parser("compare", help="tabulate results over seeds and write a report with plots")
    compare.add_argument(
        "results",
        nargs="+",
        help="results.jsonl files of zoo bench (or their --out directories), "
        "or run directories of zoo train (their eval.json)",
    )
    compare.add_argument("--report", "--out", dest="report", help="directory for report.md and its plots")
    compare.add_argument(
        "--no-samples", action="store_true", help="leave the figures of each variant's model out of the report"
    )


def cmd_compare(args, registry) -> None:
    from zoo.evaluation.report import print_comparison

    print_comparison(
        args.results,
        output_dir(Path(args.report), "--report") if args.report else None,
        registry,
        samples=not args.no_samples,
    )
