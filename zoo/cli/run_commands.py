"""`zoo train`, `zoo eval`, `zoo sample` and `zoo plot`: one run trained, evaluated and drawn,
each command beside the function that builds its parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from zoo.cli.common import image_file, output_dir, start_devices
from zoo.cli.parser import SEED, Subcommands, add_parallel_arguments, integer, number
from zoo.errors import ZooError

UNCONDITIONAL = "unconditional"


def add_train_parser(commands: Subcommands) -> None:
    train = commands.add_parser("train", help="train a variant, or continue a run (--resume RUN)")
    train.add_argument("variant", nargs="?", help="the variant to train (not needed with --resume RUN)")
    train.add_argument("--workdir", "--out", dest="workdir", help="run directory (default runs/VARIANT)")
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


def refuse_set_beside(assignments: Sequence[str], key: str, option: str, option_given: bool) -> None:
    """An option that stands for `--set KEY=...` given beside such an assignment: one would win unsaid."""
    from zoo.core.conflicts import lookup
    from zoo.core.recipes import parse_assignment

    for assignment in assignments if option_given else ():
        path, value = parse_assignment(assignment)
        inside = key.startswith(path + ".") and isinstance(value, dict)  # --set train={devices: 4}
        if path == key or path.startswith(key + ".") or (inside and lookup(value, key[len(path) + 1 :]) is not None):
            raise ZooError(f"{option} and --set {assignment} both set {key}; give one of them")


def add_eval_parser(commands: Subcommands) -> None:
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
        help="also the disentanglement metrics (MIG, DCI, beta-VAE and FactorVAE scores, SAP, modularity) "
        "against the dataset's ground-truth factors (e.g. dsprites)",
    )
    evaluate.add_argument(
        "--dci-model",
        choices=("gbt", "forest"),
        default="gbt",
        help="DCI's classifiers: gradient-boosted trees as disentanglement_lib (default), or random forests",
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
    evaluate.add_argument("--out", help="also write the evaluation's JSON to this file (RUN/eval.json keeps it too)")


def cmd_eval(args, registry) -> None:
    from zoo.evaluation.disentanglement import require_factors
    from zoo.training.parallel import is_main_process
    from zoo.progress import stage
    from zoo.evaluation.trained_run import Run

    out = json_file(Path(args.out), "--out") if args.out else None
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
        dci_model=args.dci_model,
    )
    if is_main_process():
        print(json.dumps(result, indent=2))
        if out is not None:
            out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def json_file(path: Path, option: str) -> Path:
    """A file the command may write its JSON to, checked before the long work."""
    if path.is_dir():
        raise ZooError(f"{option} {path}: is a directory; give a file name, e.g. {path / 'eval.json'}")
    output_dir(path.parent, option)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def add_sample_parser(commands: Subcommands) -> None:
    sample = commands.add_parser("sample", help="write a PNG grid of samples")
    sample.add_argument("run", help="run directory")
    sample.add_argument("--out", help="PNG path (default RUN/samples.png)")
    sample.add_argument("--condition", help="for CVAEs: classes to write, e.g. '2026' or '3 7'")
    sample.add_argument("--per-row", type=integer(1, 100), default=8, help="samples per row (per condition)")
    sample.add_argument("--temperature", type=number(0.0), default=1.0, help="scale of z around the prior mean")
    sample.add_argument("--seed", type=SEED, default=0)
    sample.add_argument("--data-dir")
    sample.add_argument(
        "--sampler",
        metavar="NAME",
        help="draw z from a prior fitted after training to the run's training codes instead of the run's own "
        "(gmm_fitted, maf_fitted, two_stage; pixelcnn_codes for a VQ-VAE): fitted once, then read from RUN/samplers/",
    )
    sample.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="sampler.OPTION=VALUE",
        help="with --sampler: one of its options, e.g. sampler.num_components=20 or sampler.steps=10000",
    )


def sampler_options(assignments: Sequence[str], sampler) -> dict:
    """{option: value} from `--set sampler.OPTION=VALUE`; the only settings `zoo sample` takes."""
    from zoo.core.recipes import parse_assignment

    options = {}
    for assignment in assignments:
        path, value = parse_assignment(assignment)
        option = path.removeprefix("sampler.")
        if sampler is None or option == path or "." in option:
            needs = "" if sampler is None else " (one option of the sampler named by --sampler)"
            raise ZooError(
                f"--set {assignment}: zoo sample takes --set sampler.OPTION=VALUE with --sampler NAME{needs}"
            )
        options[option] = value
    return options


def cmd_sample(args, registry) -> None:
    from zoo.evaluation.plots import plot_images
    from zoo.evaluation.samplers import sampler_spec
    from zoo.progress import stage
    from zoo.evaluation.trained_run import Run

    options = sampler_options(args.set, args.sampler)
    default_out = Path(args.run) / ("samples.png" if args.sampler is None else f"samples_{args.sampler}.png")
    if args.sampler is not None:
        sampler_spec(args.sampler, options, registry)  # a bad name or option refused before the model loads
    out = image_file(Path(args.out or default_out), "--out")
    if args.condition is not None:
        check_condition_text(Path(args.run), args.condition, registry, args.data_dir)
    stage(f"loading {args.run}")
    run = Run.load(args.run, registry, args.data_dir)
    title = f"{run.variant} (step {run.step})"
    if args.sampler is not None:
        stage(f"sampler {args.sampler}: fitting it to the training codes, or reading its fit from {args.run}/samplers")
        run = run.with_sampler(args.sampler, options)
        title += f", sampler {args.sampler}"
    stage("sampling")
    images, labels, rows = run.sample_grid(
        condition_text=args.condition, per_row=args.per_row, temperature=args.temperature, seed=args.seed
    )
    plot_images(images, rows, out, title, row_labels=labels or ())
    print(out)


def check_condition_text(run_dir: Path, text: str, registry, data_dir) -> None:
    """Refuse a --condition the run's condition cannot read before its model is loaded (seconds of
    restoring and compiling): only the recipe, the dataset and the condition are needed for it."""
    from zoo.core.data import build_condition, build_dataset
    from zoo.training import runs

    recipe = runs.resolved_recipe(run_dir, registry)
    dataset = build_dataset(recipe, registry, data_dir)
    build_condition(recipe, registry, dataset).parse(text, dataset)


def add_plot_parser(commands: Subcommands) -> None:
    plot = commands.add_parser(
        "plot", help="write a run's figures as PNGs (samples, reconstructions, latent space, ...)"
    )
    plot.add_argument("run", help="run directory")
    plot.add_argument("--out", help="directory for the PNGs (default RUN/plots)")
    plot.add_argument("--seed", type=SEED, default=0, help="seed of the samples")
    plot.add_argument("--data-dir")


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
