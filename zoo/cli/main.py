"""The `zoo` command: list, plugins, show, train, eval, sample, plot, bench, compare, serve, export-web,
and the commands plugins add (`register_commands`, zoo.cli.plugin_commands).

The parser is zoo.cli.parser's. Errors the user can act on print one line on stderr and exit
with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from zoo.cli.parser import build_parser, command_word, subcommands
from zoo.errors import UnknownComponentError, ZooError
from zoo.training.signals import TrainingInterrupted

VARIANT_KIND = "variant"
UNCONDITIONAL = "unconditional"


def start_devices(args) -> None:
    """Join the multi-host job when asked; refuse a bad --devices before anything is built."""
    if args.distributed:
        from zoo.training.parallel import RENDEZVOUS_TIMEOUT_SECONDS, initialize_distributed

        timeout = args.rendezvous_timeout or RENDEZVOUS_TIMEOUT_SECONDS
        initialize_distributed(args.coordinator, args.num_processes, args.process_id, timeout)
    elif any(
        given is not None for given in (args.coordinator, args.num_processes, args.process_id, args.rendezvous_timeout)
    ):
        raise ZooError("--coordinator, --num-processes, --process-id and --rendezvous-timeout need --distributed")


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
        raise ZooError(
            f"{option} {path}: cannot write an image of type {path.suffix or '(no extension)'!r}; "
            f"use one of {', '.join('.' + f for f in formats)}"
        )
    output_dir(path.parent, option)
    return path


def refuse_set_beside(assignments: Sequence[str], key: str, option: str, option_given: bool) -> None:
    """An option that stands for `--set KEY=...` given beside such an assignment: one would win unsaid."""
    from zoo.core.conflicts import lookup
    from zoo.core.recipes import parse_assignment

    for assignment in assignments if option_given else ():
        path, value = parse_assignment(assignment)
        inside = key.startswith(path + ".") and isinstance(value, dict)  # --set train={devices: 4}
        if path == key or path.startswith(key + ".") or (inside and lookup(value, key[len(path) + 1 :]) is not None):
            raise ZooError(f"{option} and --set {assignment} both set {key}; give one of them")


def recipe_book(args):
    """registry.yaml plus the user's recipe files (--recipes)."""
    from zoo.cli.api import recipe_book as book

    return book(args.recipes)


def cmd_list(args, registry) -> None:
    from zoo.core.registry import KINDS, unknown_name_message

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
    from zoo.cli.plugin_commands import list_plugin_commands
    from zoo.core.plugin_manager import default_manager, plugin_source

    by_plugin: dict[str, list[str]] = {}
    for component in registry.list():
        by_plugin.setdefault(component.plugin, []).append(f"{component.kind}:{component.name}")
    for command in list_plugin_commands(default_manager()):
        by_plugin.setdefault(command.plugin, []).append(f"command:{command.name}")
    for plugin, names in sorted(by_plugin.items()):
        print(f"{plugin}  ({plugin_source(plugin)})")
        print("    " + ", ".join(names))


def cmd_show(args, registry) -> None:
    from zoo.core.recipes import dump

    print(dump(recipe_book(args).resolve(args.variant, registry, args.set)), end="")


def cmd_train(args, registry) -> None:
    from zoo.cli.api import check_run_directory, train_in

    overrides = list(args.set)
    refuse_set_beside(overrides, "train.devices", "--devices", args.devices is not None)
    refuse_set_beside(overrides, "condition", "--task", bool(args.task))
    if args.devices is not None:
        overrides.append(f"train.devices={args.devices}")
    if args.task:
        overrides.insert(0, "condition=null" if args.task == UNCONDITIONAL else f"condition={{name: {args.task}}}")
    if args.workdir:
        output_dir(Path(args.workdir), "--workdir")
    if args.distributed:  # each process checks the run directory before joining: joining waits for them all,
        # so none can find what process 0 writes there and take it for another run
        check_run_directory(args.variant, args.workdir, overrides, args.resume, args.recipes, registry)
    start_devices(args)
    summary = train_in(
        args.variant,
        args.workdir,
        overrides=overrides,
        resume=args.resume,
        recipes=args.recipes,
        registry=registry,
        data_dir=args.data_dir,
        progress=not args.quiet,
    )
    print(json.dumps(summary, indent=2))


def cmd_eval(args, registry) -> None:
    from zoo.evaluation.disentanglement import require_factors
    from zoo.training.parallel import is_main_process
    from zoo.progress import stage
    from zoo.evaluation.trained_run import Run

    start_devices(args)
    stage(f"loading {args.run} ({args.checkpoint} checkpoint)")
    run = Run.load(args.run, registry, args.data_dir, args.checkpoint)
    if args.disentanglement:
        require_factors(run.experiment.dataset, "--disentanglement")
    result = run.evaluate(
        args.split,
        args.num_samples,
        batch_size=args.batch_size,
        limit=args.limit,
        seed=args.seed,
        proposals=("posterior", "prior") if args.prior_proposal else ("posterior",),
        devices=args.devices,
        progress=is_main_process(),
        disentanglement=args.disentanglement,
        disentanglement_examples=args.disentanglement_examples,
    )
    if is_main_process():
        print(json.dumps(result, indent=2))


def cmd_sample(args, registry) -> None:
    from zoo.evaluation.plots import plot_images
    from zoo.progress import stage
    from zoo.evaluation.trained_run import Run

    out = image_file(Path(args.out or Path(args.run) / "samples.png"), "--out")
    stage(f"loading {args.run}")
    run = Run.load(args.run, registry, args.data_dir)
    stage("sampling")
    images, labels, rows = run.sample_grid(
        condition_text=args.condition, per_row=args.per_row, temperature=args.temperature, seed=args.seed
    )
    plot_images(images, rows, out, f"{run.variant} (step {run.step})", row_labels=labels or ())
    print(out)


def cmd_plot(args, registry) -> None:
    from zoo.evaluation.plots import plot_run

    for path in plot_run(
        Path(args.run),
        Path(args.out or Path(args.run) / "plots"),
        registry,
        seed=args.seed,
        data_dir=args.data_dir,
        progress=True,
    ):
        print(path)


def cmd_bench(args, registry) -> None:
    from zoo.evaluation.bench import load_suite, run_suite
    from zoo.evaluation.report import print_comparison

    book = recipe_book(args)
    suite = load_suite(args.suite, book)
    out = output_dir(Path(args.out or Path("runs") / "bench" / suite.name), "--out")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    report = output_dir(Path(args.report), "--report") if args.report else None
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


def cmd_compare(args, registry) -> None:
    from zoo.evaluation.report import print_comparison

    print_comparison(
        args.results,
        output_dir(Path(args.report), "--report") if args.report else None,
        registry,
        samples=not args.no_samples,
    )


def cmd_serve(args, registry) -> None:
    from zoo.web.generation import PageGenerator
    from zoo.progress import stage
    from zoo.web.serve import make_server
    from zoo.evaluation.trained_run import Run

    stage(f"loading {args.run}")
    run = Run.load(args.run, registry, args.data_dir)
    say_class_accuracy(run, Path(args.run))
    generator = PageGenerator(run.experiment, run.graphdef, run.params, run.step)
    stage("compiling the sampler for every batch size")
    generator.warm_up()
    server = make_server(
        generator,
        args.host,
        args.port,
        quiet=not args.log_requests,
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
    )
    print(f"serving {args.run} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


def say_class_accuracy(run, run_dir: Path, per_class: int = 100) -> None:
    """Print, before serving a class-conditional model, how often its samples show the class asked
    for (and warn when the page would draw the wrong one too often)."""
    if not getattr(run.experiment.condition, "class_conditional", False):
        return
    from zoo.evaluation import classifier
    from zoo.progress import stage

    dataset = run.experiment.dataset
    stage("scoring the model's samples with the harness classifier")
    path = run_dir / "classifiers" / f"{dataset.name}.npz"
    value = classifier.sample_accuracy(run.experiment, run.model, path, per_class, seed=0, progress=True)
    for line in classifier.accuracy_notice(value, per_class * dataset.num_classes):
        print(line, file=sys.stderr, flush=True)


def cmd_export_web(args, registry) -> None:
    from zoo.web.export_web import export_web

    report = export_web(
        Path(args.run),
        output_dir(Path(args.dir), "DIR"),
        registry,
        per_class=args.per_class,
        seed=args.seed,
        data_dir=args.data_dir,
        progress=True,
    )
    print(json.dumps(report, indent=2))
    if report.get("class_accuracy_float") is not None:
        from zoo.evaluation.classifier import accuracy_notice

        for line in accuracy_notice(report["class_accuracy_int8"], report["samples"]):
            print(line, file=sys.stderr, flush=True)


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


COMMANDS = {
    "list": cmd_list,
    "plugins": cmd_plugins,
    "show": cmd_show,
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "plot": cmd_plot,
    "bench": cmd_bench,
    "compare": cmd_compare,
    "serve": cmd_serve,
    "export-web": cmd_export_web,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `zoo` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_command(argv)
    except TrainingInterrupted as exc:
        print(f"zoo: {exc}\nzoo: continue with: {resume_command(argv, command_word(argv) or '')}", file=sys.stderr)
        return exc.exit_status
    except ZooError as exc:
        print(f"zoo: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted; a run can continue with --resume", file=sys.stderr)
        return 130


def run_command(argv: list[str]) -> int:
    """Parse the command line and run its command, a built-in or a plugin's; returns the exit status."""
    parser = build_parser()
    plugin_commands: Optional[dict] = None
    if command_word(argv) not in (None, *subcommands(parser).choices):
        plugin_commands = load_plugin_commands(parser)  # the parser must know a plugin's command to parse it
    args = parser.parse_args(argv)  # exits here on --help and on argparse's errors
    quiet_dependencies()
    if (
        plugin_commands is None
    ):  # after parsing, so `zoo list --help` imports no plugin; a clash is refused on every run
        plugin_commands = load_plugin_commands(parser)
    from zoo.core.plugin_manager import default_registry

    run = COMMANDS[args.command] if args.command in COMMANDS else plugin_commands[args.command].run
    status = run(args, default_registry())
    return 0 if status is None else int(status)


def load_plugin_commands(parser) -> dict:
    """Every installed plugin's commands, added to `parser`, by name."""
    from zoo.cli.plugin_commands import add_plugin_commands
    from zoo.core.plugin_manager import default_manager

    return add_plugin_commands(parser, default_manager())


if __name__ == "__main__":
    sys.exit(main())
