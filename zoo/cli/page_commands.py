"""`zoo serve` and `zoo export-web`: the handwriting page, served by a trained model or exported
to run in the browser, each command beside the function that builds its parser."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zoo.cli.common import output_dir
from zoo.cli.parser import SEED, Subcommands, integer, number
from zoo.errors import ZooError


def add_serve_parser(commands: Subcommands) -> None:
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


def add_export_web_parser(commands: Subcommands) -> None:
    export_web = commands.add_parser(
        "export-web", help="a static page that runs the model in the browser (int8 weights)"
    )
    export_web.add_argument("run", help="run directory")
    export_web.add_argument("dir", nargs="?", help="output directory for the page (or --out DIR)")
    export_web.add_argument("--out", help="output directory for the page (the same as DIR)")
    export_web.add_argument(
        "--per-class", type=integer(1, 10000), default=100, help="samples per class to measure quantisation's cost"
    )
    export_web.add_argument("--seed", type=SEED, default=0)
    export_web.add_argument("--data-dir")


def page_directory(args) -> Path:
    """The page's directory, given as DIR or as --out DIR like every other command's output."""
    if args.dir and args.out and Path(args.dir) != Path(args.out):
        raise ZooError(f"export-web: DIR {args.dir} and --out {args.out} name two directories; give one")
    if not (args.dir or args.out):
        raise ZooError("export-web: give the page's directory, as DIR or --out DIR (see zoo export-web --help)")
    return output_dir(Path(args.out or args.dir), "--out" if args.out else "DIR")


def cmd_export_web(args, registry) -> None:
    from zoo.web.export_web import export_web

    report = export_web(
        Path(args.run),
        page_directory(args),
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
