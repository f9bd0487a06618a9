"""The `zoo` command: list, plugins, show, train, eval, sample, plot, bench, compare, serve, export-web.

Errors the user can act on print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from zoo.config import MAX_SEED
from zoo.errors import UnknownComponentError, ZooError
from zoo.signals import TrainingInterrupted

VARIANT_KIND = "variant"
UNCONDITIONAL = "unconditional"


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


SEED = integer(0, MAX_SEED)  # the page's limit too (zoo.generation)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = Parser(prog="zoo", description="A zoo of variational autoencoders in JAX.")
    parser.add_argument("--version", action=VersionAction, help="print the version (and the git commit of a checkout)")
    parser.add_argument("--recipes", action="append", default=[], metavar="FILE",
                        help="a recipe file of your own, read after registry.yaml (repeatable)")
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
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                       help="continue a run from its newest checkpoint with its own recipe (RUN, or --workdir); "
                            "--set may change train.* settings, which is recorded in RUN/recipe_history.jsonl")
    train.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override one field")
    train.add_argument("--task", help="what x and c are: 'unconditional' or a condition name (onehot_label, visible_quadrants)")
    train.add_argument("--data-dir", help="directory holding the dataset's files (e.g. its IDX files)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_parallel_arguments(train)

    evaluate = commands.add_parser("eval", help="evaluate a trained run (JSON out)")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--num-samples", "-k", type=integer(0), default=5000, help="importance samples K (0 skips; 5000 is the published protocol)")
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test"))
    evaluate.add_argument("--batch-size", type=integer(1), default=100)
    evaluate.add_argument("--limit", type=integer(1), help="evaluate only the first N examples")
    evaluate.add_argument("--seed", type=SEED, default=0)
    evaluate.add_argument("--prior-proposal", action="store_true", help="also estimate with p(z|c) as proposal (for GSNNs)")
    evaluate.add_argument("--disentanglement", action="store_true",
                          help="also MIG and DCI against the dataset's ground-truth factors (e.g. dsprites)")
    evaluate.add_argument("--disentanglement-examples", type=integer(10), default=10000,
                          help="score disentanglement on at most the split's first N examples")
    evaluate.add_argument("--checkpoint", choices=("best", "newest"), default="best",
                          help="the checkpoint with the best validation metric (default) or the newest")
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

    plot = commands.add_parser("plot", help="write a run's figures as PNGs (samples, reconstructions, latent space, ...)")
    plot.add_argument("run", help="run directory")
    plot.add_argument("--out", help="directory for the PNGs (default RUN/plots)")
    plot.add_argument("--seed", type=SEED, default=0, help="seed of the samples")
    plot.add_argument("--data-dir")

    bench = commands.add_parser("bench", help="run a suite: variants x datasets x tasks x seeds (resumable)")
    bench.add_argument("suite", help="a suite file, or the name of a shipped suite (quick, quadrants, ...; zoo/suites/)")
    bench.add_argument("--out", help="output directory (default runs/bench/SUITE)")
    bench.add_argument("--data-dir")
    bench.add_argument("--progress", action="store_true", help="show a progress bar per run")
    bench.add_argument("--variants", help="run only these variants of the suite, comma-separated "
                                          "(several processes can share one --out, each with its own variants)")
    bench.add_argument("--report", help="also write the report of zoo compare (report.md and its plots) to this directory")

    serve = commands.add_parser("serve", help="a local page where a trained model writes what you type")
    serve.add_argument("run", help="run directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=integer(0, 65535), default=8000, help="0: any free port")
    serve.add_argument("--data-dir")
    serve.add_argument("--log-requests", action="store_true", help="log each request on stderr")

    export_web = commands.add_parser("export-web", help="a static page that runs the model in the browser (int8 weights)")
    export_web.add_argument("run", help="run directory")
    export_web.add_argument("dir", help="output directory for the page")
    export_web.add_argument("--per-class", type=integer(1, 10000), default=100, help="samples per class to measure quantisation's cost")
    export_web.add_argument("--seed", type=SEED, default=0)
    export_web.add_argument("--data-dir")

    compare = commands.add_parser("compare", help="tabulate results over seeds and write a report with plots")
    compare.add_argument("results", nargs="+", help="results.jsonl files of zoo bench (or their --out directories), "
                                                     "or run directories of zoo train (their eval.json)")
    compare.add_argument("--report", help="directory for report.md and its plots")
    compare.add_argument("--no-samples", action="store_true", help="leave the figures of each variant's model out of the report")
    return parser


def add_parallel_arguments(command: argparse.ArgumentParser) -> None:
    """--devices (the data-parallel mesh) and the multi-host options of jax.distributed."""
    group = command.add_argument_group("devices")
    group.add_argument("--devices", type=integer(0), metavar="N",
                       help="split each batch over N devices (0 = all; sets train.devices for training)")
    group.add_argument("--distributed", action="store_true",
                       help="join a multi-host job first (jax.distributed.initialize; Slurm and Open MPI are detected)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="with --distributed: process 0's address")
    group.add_argument("--num-processes", type=integer(1), metavar="N", help="with --distributed: how many processes")
    group.add_argument("--process-id", type=integer(0), metavar="I", help="with --distributed: this process's index")


def start_devices(args) -> None:
    """Join the multi-host job when asked; refuse a bad --devices before anything is built."""
    if args.distributed:
        from zoo.parallel import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    elif args.coordinator or args.num_processes is not None or args.process_id is not None:
        raise ZooError("--coordinator, --num-processes and --process-id need --distributed")


def output_dir(path: Path, option: str) -> Path:
    """A directory the command may create or write into: refused when a file is in the way."""
    for place in [path, *path.parents]:
        if place.exists() and not place.is_dir():
            raise ZooError(f"{option} {path}: {place} exists and is not a directory")
    return path


def image_file(path: Path, option: str) -> Path:
    """A path an image can be saved to, by its extension (matplotlib's formats)."""
    from matplotlib.figure import Figure

    if path.is_dir():
        raise ZooError(f"{option} {path}: is a directory; give a file name, e.g. {path / 'samples.png'}")
    formats = sorted(Figure().canvas.get_supported_filetypes())
    if path.suffix.lower().lstrip(".") not in formats:
        raise ZooError(f"{option} {path}: cannot write an image of type {path.suffix or '(no extension)'!r}; "
                       f"use one of {', '.join('.' + f for f in formats)}")
    output_dir(path.parent, option)
    return path


def recipe_book(args):
    """registry.yaml plus the user's recipe files (--recipes)."""
    from zoo.api import recipe_book as book

    return book(args.recipes)


def cmd_list(args, registry) -> None:
    from zoo.registry import KINDS, unknown_name_message

    kinds = list(KINDS) + [VARIANT_KIND]
    if args.kind is not None and args.kind not in kinds and args.kind.rstrip("s") not in kinds:
        raise UnknownComponentError(unknown_name_message("kind", args.kind, kinds))
    wanted = None if args.kind is None else args.kind.rstrip("s") if args.kind not in kinds else args.kind
    for component in registry.list(None if wanted in (None, VARIANT_KIND) else wanted, args.pattern):
        if wanted != VARIANT_KIND:
            print(f"{component.kind:<11} {component.name:<20} {component.summary}")
    if wanted in (None, VARIANT_KIND):
        import fnmatch

        book = recipe_book(args)
        for name in book.names():
            if fnmatch.fnmatchcase(name, args.pattern):
                description = (book.raw(name).get("description") or "").strip()
                print(f"{VARIANT_KIND:<11} {name:<20} {description}")


def cmd_plugins(args, registry) -> None:
    from zoo.plugin_manager import plugin_source

    by_plugin: dict[str, list[str]] = {}
    for component in registry.list():
        by_plugin.setdefault(component.plugin, []).append(f"{component.kind}:{component.name}")
    for plugin, names in sorted(by_plugin.items()):
        print(f"{plugin}  ({plugin_source(plugin)})")
        print("    " + ", ".join(names))


def cmd_show(args, registry) -> None:
    from zoo.recipes import dump

    print(dump(recipe_book(args).resolve(args.variant, registry, args.set)), end="")


def cmd_train(args, registry) -> None:
    from zoo.api import train_in

    start_devices(args)
    overrides = list(args.set)
    if args.devices is not None:
        overrides.append(f"train.devices={args.devices}")
    if args.task:
        overrides.insert(0, "condition=null" if args.task == UNCONDITIONAL else f"condition={{name: {args.task}}}")
    if args.workdir:
        output_dir(Path(args.workdir), "--workdir")
    summary = train_in(args.variant, args.workdir, overrides=overrides, resume=args.resume, recipes=args.recipes,
                       registry=registry, data_dir=args.data_dir, progress=not args.quiet)
    print(json.dumps(summary, indent=2))


def cmd_eval(args, registry) -> None:
    from zoo.disentanglement import require_factors
    from zoo.parallel import is_main_process
    from zoo.progress import stage
    from zoo.trained_run import Run

    start_devices(args)
    stage(f"loading {args.run} ({args.checkpoint} checkpoint)")
    run = Run.load(args.run, registry, args.data_dir, args.checkpoint)
    if args.disentanglement:
        require_factors(run.experiment.dataset, "--disentanglement")
    result = run.evaluate(args.split, args.num_samples, batch_size=args.batch_size, limit=args.limit, seed=args.seed,
                          proposals=("posterior", "prior") if args.prior_proposal else ("posterior",),
                          devices=args.devices, progress=is_main_process(), disentanglement=args.disentanglement,
                          disentanglement_examples=args.disentanglement_examples)
    if is_main_process():
        print(json.dumps(result, indent=2))


def cmd_sample(args, registry) -> None:
    from zoo.images import save_grid
    from zoo.progress import stage
    from zoo.trained_run import Run

    out = image_file(Path(args.out or Path(args.run) / "samples.png"), "--out")
    stage(f"loading {args.run}")
    run = Run.load(args.run, registry, args.data_dir)
    stage("sampling")
    images, labels, rows = run.sample_grid(condition_text=args.condition, per_row=args.per_row,
                                           temperature=args.temperature, seed=args.seed)
    save_grid(images, out, rows=rows, row_labels=labels, title=f"{run.variant} (step {run.step})")
    print(out)


def cmd_plot(args, registry) -> None:
    from zoo.plots import plot_run

    for path in plot_run(Path(args.run), Path(args.out or Path(args.run) / "plots"), registry, seed=args.seed, data_dir=args.data_dir,
                         progress=True):
        print(path)


def cmd_bench(args, registry) -> None:
    from zoo.bench import load_suite, run_suite
    from zoo.report import print_comparison

    book = recipe_book(args)
    suite = load_suite(args.suite, book)
    out = output_dir(Path(args.out or Path("runs") / "bench" / suite.name), "--out")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    report = output_dir(Path(args.report), "--report") if args.report else None
    run_suite(suite, out, book, registry, data_dir=args.data_dir, progress=args.progress,
              log=lambda line: print(line, file=sys.stderr, flush=True), variants=variants)
    print_comparison([out / "results.jsonl"], report, registry)  # the table once: `make run` is this one command
    print(f"\nresults: {out / 'results.jsonl'}")


def cmd_compare(args, registry) -> None:
    from zoo.report import print_comparison

    print_comparison(args.results, output_dir(Path(args.report), "--report") if args.report else None, registry,
                     samples=not args.no_samples)


def cmd_serve(args, registry) -> None:
    from zoo.generation import PageGenerator
    from zoo.progress import stage
    from zoo.serve import make_server
    from zoo.trained_run import Run

    stage(f"loading {args.run}")
    run = Run.load(args.run, registry, args.data_dir)
    generator = PageGenerator(run.experiment, run.graphdef, run.params, run.step)
    stage("compiling the sampler for every batch size")
    generator.warm_up()
    server = make_server(generator, args.host, args.port, quiet=not args.log_requests)
    print(f"serving {args.run} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


def cmd_export_web(args, registry) -> None:
    from zoo.export_web import export_web

    report = export_web(Path(args.run), output_dir(Path(args.dir), "DIR"), registry, per_class=args.per_class, seed=args.seed,
                        data_dir=args.data_dir, progress=True)
    print(json.dumps(report, indent=2))


def one_line(message: str) -> str:
    """A message as one printable line: a name from a file may hold newlines, control
    characters or lone surrogates, which are shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def quiet_dependencies() -> None:
    """Leave out warnings of dependencies that are known to be harmless here (orbax's absl
    notes about metadata it does not need); the zoo says itself what a user must know."""
    import logging
    import warnings

    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="orbax")


def resume_command(argv: Sequence[str], command: str) -> str:
    """The command line that continues an interrupted `zoo train` or `zoo bench`."""
    import shlex

    words = ["zoo", *argv]
    if command == "train" and "--resume" not in words:
        words.append("--resume")  # a bench resumes its unfinished runs by itself
    return shlex.join(words)


COMMANDS = {"list": cmd_list, "plugins": cmd_plugins, "show": cmd_show, "train": cmd_train, "eval": cmd_eval,
            "sample": cmd_sample, "plot": cmd_plot, "bench": cmd_bench, "compare": cmd_compare,
            "serve": cmd_serve, "export-web": cmd_export_web}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `zoo` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    quiet_dependencies()
    try:
        from zoo.plugin_manager import default_registry

        COMMANDS[args.command](args, default_registry())
    except TrainingInterrupted as exc:
        print(f"zoo: {exc}\nzoo: continue with: {resume_command(argv, args.command)}", file=sys.stderr)
        return exc.exit_status
    except ZooError as exc:
        print(f"zoo: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted; a run can continue with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
