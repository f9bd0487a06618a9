"""Peak resident memory and speed of the 32x32x3 conv VAE trained on a folder of PNGs streamed from
disk (images `decode: lazy`, `train.input: stream`) against the same folder decoded into memory.

Folders of generated colour PNGs (colour dSprites at 32x32) are written whose decoded float32
images take 10x `train.memory_budget_mb`, and 1x for comparison; each training runs in a fresh
process whose peak RSS (ru_maxrss) is read when it ends. Resident memory is flat when the 10x
folder streamed peaks where the 1x folder does; the in-memory run of the 10x folder holds it all.
No validation split (validation: 0): validating in batches of 256 peaks higher than the 1x
folder's one small batch would, whatever the input, and that is not the input's memory.

    .venv/bin/python benchmarks/streaming_images.py --budget-mb 4 --out benchmarks/results/streaming_images.md

The throughput ratio is timed apart from the memory (`--throughput`): one process, the 10x folder
streamed (decode: lazy, grain) and decoded into memory, epochs timed in alternating rounds so that
a change of the machine's load hits both alike (separate processes minutes apart gave 0.96 and
0.41 for the same comparison under a moving load).

    .venv/bin/python benchmarks/streaming_images.py --budget-mb 4 --throughput --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_BYTES = 32 * 32 * 3 * 4  # one decoded float32 image

CHILD = """
import json, resource, sys
import zoo
path, decode, feed, budget, steps = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
overrides = {
    "dataset": {"name": "images", "path": path, "decode": decode, "channels": 3, "validation": 0.0},
    "likelihood": {"name": "discretized_logistic_mixture", "components": 5},
    "train.input": feed, "train.memory_budget_mb": budget, "train.steps": steps, "train.batch_size": 64,
    "train.log_every": 20, "train.checkpoint_every": steps,
}
run = zoo.train("vae_conv", sys.argv[6], overrides=overrides, progress=False)
rates = [r["steps_per_second"] for r in run.metrics if r.get("split") == "train" and r.get("steps_per_second")]
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rates": rates}))
"""


def write_folder(out: Path, count: int) -> Path:
    """`count` 32x32 colour dSprites as PNGs in one subfolder per shape."""
    from vae_zoo_plugins.datasets.color_dsprites import make_color_dsprites

    dataset = make_color_dsprites(image_size=32, num_images=count + 1, validation_size=0, test_size=1, seed=2)
    for index, (image, label) in enumerate(zip(dataset.train.images, dataset.train.labels)):
        folder = out / dataset.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{index:06d}.png")
    return out


def train(path: Path, decode: str, feed: str, budget: float, steps: int, workdir: Path) -> dict:
    """One training in a fresh process: its peak RSS and steps per second after the first window."""
    argv = [sys.executable, "-c", CHILD, str(path), decode, feed, str(budget), str(steps), str(workdir)]
    # Run outside the checkout: a stale vae_zoo.egg-info there would hide the installed entry points.
    done = subprocess.run(argv, capture_output=True, text=True, cwd=workdir.parent)
    if done.returncode:
        raise SystemExit(f"the training failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["steps_per_second"] = statistics.median(result.pop("rates")[1:])  # the first window compiles
    return result


def alternating_throughput(folder: Path, budget: float, rounds: int) -> list[str]:
    """Epochs of the 32x32x3 conv VAE on `folder`, streamed and in memory, timed in alternation."""
    sys.path.insert(0, str(Path(__file__).parent))
    import zoo
    from streaming import epoch_runner
    from zoo.core.plugin_manager import default_registry

    registry, book = default_registry(), zoo.RecipeBook([zoo.default_registry_path()])
    common = [
        "likelihood={name: discretized_logistic_mixture, components: 5}",
        "train.batch_size=64",
        f"train.memory_budget_mb={budget}",
    ]
    runners = {}
    for kind, decode in (("memory", "eager"), ("stream", "lazy")):
        dataset = f"dataset={{name: images, path: {folder}, decode: {decode}, channels: 3, validation: 0.0}}"
        runners[kind] = epoch_runner(kind, registry, book, rounds, "vae_conv", [dataset, *common])
    for run_epoch, *_ in runners.values():
        run_epoch(5)  # compile, and start the streamed input's workers
    seconds: dict[str, list[float]] = {kind: [] for kind in runners}
    for _ in range(rounds):
        for kind, (run_epoch, *_) in runners.items():
            seconds[kind].append(run_epoch())
    _, per_epoch, examples = runners["memory"]
    memory, stream = statistics.median(seconds["memory"]), statistics.median(seconds["stream"])
    return [
        f"Throughput, one process, {examples} images ({per_epoch} steps of batch 64 an epoch), "
        f"median of {rounds} alternating epochs:",
        "",
        "| input | s / epoch | epochs |",
        "|---|---|---|",
        *[
            f"| {kind} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |"
            for kind, v in seconds.items()
        ],
        "",
        f"Streamed / in-memory throughput: {memory / stream:.2f} (target: at least 0.80).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mb", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=140)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--throughput", action="store_true", help="time the throughput ratio only, in one process")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    large = int(10 * args.budget_mb * 2**20 / IMAGE_BYTES)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.throughput:
            text = "\n".join(alternating_throughput(write_folder(root / "large", large), args.budget_mb, args.rounds))
            print(text)
            if args.out:
                args.out.write_text(text + "\n")
            return
        folders = {"10x": write_folder(root / "large", large), "1x": write_folder(root / "small", large // 10)}
        cases = [
            ("10x budget, streamed from disk", folders["10x"], "lazy", "stream"),
            ("1x budget, streamed from disk", folders["1x"], "lazy", "stream"),
            ("10x budget, decoded into memory", folders["10x"], "eager", "memory"),
        ]
        rows = []
        for label, path, decode, feed in cases:
            result = train(path, decode, feed, args.budget_mb, args.steps, root / f"run-{len(rows)}")
            rows.append((label, result))
            print(label, result, flush=True)
    streamed, in_memory = rows[0][1]["steps_per_second"], rows[2][1]["steps_per_second"]
    lines = [
        f"# Streaming a folder of PNGs: 32x32x3 conv VAE, budget {args.budget_mb:g} MB, {large} images at 10x",
        "",
        "| case | peak RSS (MB) | steps/s |",
        "|---|---|---|",
        *[f"| {label} | {r['peak_rss_mb']:.0f} | {r['steps_per_second']:.1f} |" for label, r in rows],
        "",
        f"Streamed / in-memory throughput at 10x: {streamed / in_memory:.2f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
