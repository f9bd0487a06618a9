"""Data parallelism: four CPU devices follow one device's loss trajectory.

XLA_FLAGS must be set before JAX starts, so each check runs in a fresh
process with `--xla_force_host_platform_device_count=4`.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}

TRAIN_BOTH = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import jax, numpy as np
    import zoo
    from zoo import runs
    from zoo.evaluate import evaluate
    from zoo.plugin_manager import default_registry
    from zoo.train import load_trained, train_and_evaluate
    from zoo.parallel import data_mesh

    steps, out = int(sys.argv[1]), Path(sys.argv[2])
    registry = default_registry()
    book = zoo.RecipeBook([zoo.default_registry_path()])
    result = {"device_count": jax.device_count()}
    for variant, devices in [(v, d) for v in sys.argv[3:] for d in (1, 4)]:
        recipe = book.resolve(variant, registry, [f"train.steps={steps}", "train.log_every=5", "train.checkpoint_every=1000",
                                                  f"train.devices={devices}"])
        workdir = out / variant / f"devices{devices}"
        summary = train_and_evaluate(recipe, workdir, registry, progress=False)
        losses = [r["loss"] for r in runs.read_metrics(workdir) if r["split"] == "train"]
        experiment, graphdef, params, _ = load_trained(workdir, registry)
        split = experiment.dataset.test
        mesh = None if devices == 1 else data_mesh(devices)
        evaluations = [evaluate(graphdef, params, experiment.condition, split._replace(images=split.images[:count], labels=split.labels[:count]),
                                jax.random.key(0), num_samples=64, batch_size=24, chunk_size=32,
                                conditional=experiment.model.conditional, mesh=mesh) for count in (48, 50)]
        result[f"{variant} {devices}"] = {"losses": losses, "validation_elbo": summary["validation_elbo"], "eval": evaluations[0],
                           "eval_padded": evaluations[1]}
    print(json.dumps(result))
""")


def run_python(code: str, *args, env=None):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **FOUR_DEVICES, **(env or {})}, timeout=600)


VARIANTS = ("vae_mlp", "cvae_sohn")  # unconditional, and a condition through encoder, prior and decoder


@pytest.fixture(scope="module")
def one_and_four(tmp_path_factory):
    """Each variant trained 30 steps and evaluated on one device and on four, in one fresh process."""
    result = run_python(TRAIN_BOTH, 30, tmp_path_factory.mktemp("parallel"), *VARIANTS)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_four_devices_follow_one(variant, one_and_four):
    steps = 30
    assert one_and_four["device_count"] == 4
    one, four = one_and_four[f"{variant} 1"], one_and_four[f"{variant} 4"]
    assert len(one["losses"]) == len(four["losses"]) == steps // 5
    # Same batches, same noise (partitionable threefry), same updates: only the
    # order of the all-reduce's float additions differs.
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=2e-4)
    assert four["losses"][-1] < four["losses"][0]  # it trained
    np.testing.assert_allclose(four["validation_elbo"], one["validation_elbo"], rtol=2e-4)
    for key in ("elbo", "kl", "reconstruction_error"):
        np.testing.assert_allclose(four["eval"][key], one["eval"][key], rtol=2e-4)
    likelihood = "conditional_log_likelihood" if variant.startswith("cvae") else "log_likelihood"
    np.testing.assert_allclose(four["eval"][likelihood], one["eval"][likelihood], rtol=2e-4)
    # 50 rows in batches of 24: the last batch of 2 is padded to 4 rows, whose
    # extra outputs are dropped; padding changes the batch's random draws, so
    # the estimate agrees only to Monte Carlo error.
    assert four["eval_padded"]["num_examples"] == 50
    np.testing.assert_allclose(four["eval_padded"][likelihood], one["eval_padded"][likelihood], atol=0.2)


def test_mesh_errors_name_the_setting(tmp_path):
    cli = [sys.executable, "-m", "zoo.cli", "train", "vae_mlp", "--quiet", "--set", "train.steps=2"]
    env = {**os.environ, **FOUR_DEVICES}
    uneven = subprocess.run([*cli, "--devices", "3", "--workdir", str(tmp_path / "a")], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=300)
    too_many = subprocess.run([*cli, "--devices", "8", "--workdir", str(tmp_path / "b")], capture_output=True, text=True,
                              cwd=REPO, env=env, timeout=300)
    for result, message in ((uneven, "train.batch_size is 128, which does not split over 3 devices; use a multiple of 3"),
                            (too_many, "train.devices is 8 but JAX sees 4 cpu device(s)")):
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_on_two_hosts(run: Path) -> list[str]:
    """`zoo train vae_mlp` as two processes of two CPU devices each; the stderr of those that failed."""
    command = [sys.executable, "-m", "zoo.cli", "train", "vae_mlp", "--quiet", "--workdir", str(run), "--devices", "0",
               "--set", "train.steps=30", "--set", "train.log_every=5", "--set", "train.checkpoint_every=1000",
               "--distributed", "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    hosts = [subprocess.Popen([*command, "--process-id", str(index)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, env=env) for index in range(2)]
    outputs = [host.communicate(timeout=600) for host in hosts]
    return [stderr for host, (_, stderr) in zip(hosts, outputs) if host.returncode != 0]


def test_two_hosts_follow_one_device(one_and_four, tmp_path):
    """Two processes of two CPU devices each, joined by jax.distributed over loopback
    (gloo collectives), train as one 4-device mesh and match one device."""
    for attempt in range(2):
        run = tmp_path / f"run{attempt}"
        failures = train_on_two_hosts(run)
        # gloo's rendezvous has a fixed 30 s deadline, which two processes
        # sharing two loaded cores can miss; that, and only that, is retried once.
        if not any("DEADLINE_EXCEEDED" in stderr for stderr in failures):
            break
    assert not failures, failures[0][-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert len(losses) == 6  # written once, by process 0
    np.testing.assert_allclose(losses, one_and_four["vae_mlp 1"]["losses"], rtol=2e-4)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["30"]
