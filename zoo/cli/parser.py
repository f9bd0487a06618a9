"""The `zoo` command's argument parser: every built-in subcommand, its options, and the
argparse types that check them (one-line errors, exit status 2). Building it imports nothing
heavy, so `zoo --help` stays fast; plugins' commands are added by zoo.cli.plugin_commands."""

from __future__ import annotations

import argparse
import math
import re
from typing import Optional, Sequence

from zoo.config import MAX_SEED


class VersionAction(argparse.Action):
    """--version, asking git for the commit only when it is given."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from zoo.version import describe

        parser.exit(0, describe() + "\n")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as the zoo's one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"zoo: error: {self.prog}: {message} (see {self.prog} --help)\n")


def integer(low: int, high: Optional[int] = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        value = int(text) if re.fullmatch(r"\s*[+-]?[0-9]+\s*", text) else None  # int() also takes '²' and '1_0'
        if value is None or value < low or (high is not None and value > high):
            span = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}")
        return value

    return parse


def number(low: float, high: float = math.inf):
    """An argparse type: a finite number in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            span = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"expected a finite number {span}, got {text!r}")
        return value

    return parse


SEED = integer(0, MAX_SEED)  # the page's limit too (zoo.web.generation)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = Parser(
        prog="zoo",
        description="A zoo of variational autoencoders in JAX.",
        epilog="Installed plugins may add commands of their own: `zoo plugins` lists them.",
    )
    parser.add_argument("--version", action=VersionAction, help="print the version (and the git commit of a checkout)")
    parser.add_argument(
        "--recipes",
        action="append",
        default=[],
        metavar="FILE",
        help="a recipe file of your own, read after registry.yaml (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list components and variants")
    listing.add_argument("kind", nargs="?", help="a component kind, or 'variant'")
    listing.add_argument("pattern", nargs="?", default="*", help="glob on names, e.g. 'cvae*'")

    commands.add_parser("plugins", help="list loaded plugins and what each registers")

    show = commands.add_parser("show", help="print a variant's resolved recipe")
    show.add_argument("variant")
    show.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override one field")

    train = commands.add_parser("train", help="train a variant, or continue a run (--resume RUN)")
    train.add_argument("variant", nargs="?", help="the variant to train (not needed with --resume RUN)")
    train.add_argument("--workdir", help="run directory (default runs/VARIANT)")
    train.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN",
        help="continue a run from its newest checkpoint with its own recipe (RUN, or --workdir); "
        "--set may change train.* settings, which is recorded in RUN/recipe_history.jsonl",
    )
    train.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override one field")
    train.add_argument(
        "--task", help="what x and c are: 'unconditional' or a condition name (onehot_label, visible_quadrants)"
    )
    train.add_argument("--data-dir", help="directory holding the dataset's files (e.g. its IDX files)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_parallel_arguments(train)

    evaluate = commands.add_parser("eval", help="evaluate a trained run (JSON out)")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument(
        "--num-samples",
        "-k",
        type=integer(0),
        default=5000,
        help="importance samples K (0 skips; 5000 is the published protocol)",
    )
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"))
    evaluate.add_argument("--batch-size", type=integer(1), default=100)
    evaluate.add_argument("--limit", type=integer(1), help="evaluate only the first N examples")
    evaluate.add_argument("--seed", type=SEED, default=0)
    evaluate.add_argument(
        "--prior-proposal", action="store_true", help="also estimate with p(z|c) as proposal (for GSNNs)"
    )
    evaluate.add_argument(
        "--disentanglement",
        action="store_true",
        help="also MIG and DCI against the dataset's ground-truth factors (e.g. dsprites)",
    )
    evaluate.add_argument(
        "--disentanglement-examples",
        type=integer(10),
        default=10000,
        help="score disentanglement on at most the split's first N examples",
    )
    evaluate.add_argument(
        "--checkpoint",
        choices=("best", "newest"),
        default="best",
        help="the checkpoint with the best validation metric (default) or the newest",
    )
    add_parallel_arguments(evaluate)
    evaluate.add_argument("--data-dir")

    sample = commands.add_parser("sample", help="write a PNG grid of samples")
    sample.add_argument("run", help="run directory")
    sample.add_argument("--out", help="PNG path (default RUN/samples.png)")
    sample.add_argument("--condition", help="for CVAEs: classes to write, e.g. '2026' or '3 7'")
    sample.add_argument("--per-row", type=integer(1, 100), default=8, help="samples per row (per condition)")
    sample.add_argument("--temperature", type=number(0.0), default=1.0, help="scale of z around the prior mean")
    sample.add_argument("--seed", type=SEED, default=0)
    sample.add_argument("--data-dir")

    plot = commands.add_parser(
        "plot", help="write a run's figures as PNGs (samples, reconstructions, latent space, ...)"
    )
    plot.add_argument("run", help="run directory")
    plot.add_argument("--out", help="directory for the PNGs (default RUN/plots)")
    plot.add_argument("--seed", type=SEED, default=0, help="seed of the samples")
    plot.add_argument("--data-dir")

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
        "--report", help="also write the report of zoo compare (report.md and its plots) to this directory"
    )

    serve = commands.add_parser("serve", help="a local page where a trained model writes what you type")
    serve.add_argument("run", help="run directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=integer(0, 65535), default=8000, help="0: any free port")
    serve.add_argument("--data-dir")
    serve.add_argument("--log-requests", action="store_true", help="log each request on stderr")
    serve.add_argument(
        "--request-timeout",
        type=number(0.1, 3600.0),
        default=5.0,
        metavar="SECONDS",
        help="close a connection silent this long, before or inside a request (default 5)",
    )
    serve.add_argument(
        "--max-connections",
        type=integer(1),
        default=256,
        metavar="N",
        help="requests handled at once; one more is answered 503 (default 256)",
    )

    export_web = commands.add_parser(
        "export-web", help="a static page that runs the model in the browser (int8 weights)"
    )
    export_web.add_argument("run", help="run directory")
    export_web.add_argument("dir", help="output directory for the page")
    export_web.add_argument(
        "--per-class", type=integer(1, 10000), default=100, help="samples per class to measure quantisation's cost"
    )
    export_web.add_argument("--seed", type=SEED, default=0)
    export_web.add_argument("--data-dir")

    compare = commands.add_parser("compare", help="tabulate results over seeds and write a report with plots")
    compare.add_argument(
        "results",
        nargs="+",
        help="results.jsonl files of zoo bench (or their --out directories), "
        "or run directories of zoo train (their eval.json)",
    )
    compare.add_argument("--report", help="directory for report.md and its plots")
    compare.add_argument(
        "--no-samples", action="store_true", help="leave the figures of each variant's model out of the report"
    )
    return parser


def add_parallel_arguments(command: argparse.ArgumentParser) -> None:
    """--devices (the data-parallel mesh) and the multi-host options of jax.distributed."""
    group = command.add_argument_group("devices")
    group.add_argument(
        "--devices",
        type=integer(0),
        metavar="N",
        help="split each batch over N devices (0 = all; sets train.devices for training)",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-host job first (jax.distributed.initialize; Slurm and Open MPI are detected)",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="with --distributed: process 0's address")
    group.add_argument("--num-processes", type=integer(1), metavar="N", help="with --distributed: how many processes")
    group.add_argument("--process-id", type=integer(0), metavar="I", help="with --distributed: this process's index")
    group.add_argument(
        "--rendezvous-timeout",
        type=number(1.0, 86400.0),
        metavar="SECONDS",
        help="with --distributed: how long a process waits for the others to join and at each barrier (default 300)",
    )


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The parser's subcommands action (argparse keeps no public handle on it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise ValueError(f"{parser.prog} has no subcommands")


def command_word(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named on a command line: the first word that is neither a top-level
    option nor the value of `--recipes`; None for `zoo`, `zoo --help` or `zoo --version`."""
    words = iter(argv)
    for word in words:
        if word == "--recipes":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None
