"""The `zoo` command end to end, as a user runs it: in subprocesses where the process is what is
tested (the installed entry points found, the exit status and stderr of a real interpreter, the
trainings and the pip-installed plugin of the slow tier), otherwise through the same entry point in
this process (`zoo.cli.main.main`, on the first-party plugins), which spares the 3-5 s of starting
Python and importing JAX that each subprocess pays."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ZOO = [sys.executable, "-m", "zoo.cli.main"]


def zoo(*args, cwd=None, env=None, check=True):
    result = subprocess.run(
        [*ZOO, *args], capture_output=True, text=True, cwd=cwd or REPO, env={**os.environ, **(env or {})}, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"zoo {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def zoo_in_process(capsys, *args):
    """`zoo ARGS` through `zoo.cli.main.main` in this process, as a CompletedProcess (exit status,
    stdout, stderr) for the same assertions as a subprocess's; argparse's exits included."""
    from zoo.cli.main import main

    try:
        status = main(list(map(str, args)))
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["zoo", *map(str, args)], status, captured.out, captured.err)


def cli(capsys, *args):
    """`zoo_in_process`, which must exit 0."""
    result = zoo_in_process(capsys, *args)
    if result.returncode not in (0, None):
        raise AssertionError(f"zoo {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def assert_clean_error(result, message):
    """Exit status 2, one line on stderr that says what was wrong, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.stderr
    assert message in lines[0], lines[0]


def test_list_and_plugins_in_a_process_find_the_installed_entry_points():
    listing = zoo("list").stdout
    for expected in (
        "encoder     mlp",
        "prior       conditional",
        "likelihood  gaussian_diagonal",
        "variant     cvae_sohn",
    ):
        assert expected in listing
    assert "mlp  (vae-zoo" in zoo("plugins").stdout


def test_list_globs_and_show_sets(capsys):
    # The glob keeps exactly the variants whose name it matches, as the full listing names them.
    every_variant = [
        line.split()[1]
        for line in zoo_in_process(capsys, "list", "variant").stdout.splitlines()
        if line.startswith("variant")
    ]
    globbed = [
        line.split()[1]
        for line in zoo_in_process(capsys, "list", "variant", "cvae*").stdout.splitlines()
        if line.startswith("variant")
    ]
    assert globbed == [name for name in every_variant if name.startswith("cvae")] and "cvae_sohn" in globbed
    assert "hidden: [64]" in zoo_in_process(capsys, "show", "vae_mlp", "--set", "encoder.hidden=[64]").stdout


@pytest.mark.slow  # training in a zoo subprocess, then evaluation and sampling
def test_train_eval_sample_a_cvae(tmp_path, capsys):
    """Trained by `zoo` in a process of its own; evaluated and sampled by the CLI in this one, whose
    compiled programs the other tests share (each new process would import and compile again)."""
    run = tmp_path / "run"
    zoo(
        "train", "cvae_sohn", "--workdir", str(run), "--quiet", "--set", "train.steps=20", "--set", "train.log_every=10"
    )
    evaluation = json.loads(cli(capsys, "eval", run, "-k", "50", "--limit", "100", "--prior-proposal").stdout)
    assert evaluation["conditional_log_likelihood_prior"] <= evaluation["conditional_log_likelihood"] + 1.0
    assert evaluation["step"] == 20 and evaluation["num_examples"] == 100
    assert evaluation["conditional_log_likelihood"] >= evaluation["elbo"] - 1.0
    for key in ("elbo", "kl", "reconstruction_error", "active_units", "num_importance_samples"):
        assert key in evaluation
    assert json.loads((run / "eval.json").read_text()) == {"test": {"50": evaluation}}
    other = json.loads(cli(capsys, "eval", run, "-k", "10", "--limit", "100").stdout)
    assert json.loads((run / "eval.json").read_text()) == {"test": {"50": evaluation, "10": other}}  # kept, not erased
    out = tmp_path / "digits.png"
    cli(capsys, "sample", run, "--condition", "2026", "--out", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_clean_error(zoo_in_process(capsys, "sample", run, "--condition", "12a"), "unknown class '12a'")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "vae_mpl"), "unknown variant 'vae_mpl' (did you mean 'vae_mlp'?)"),
        (
            ("train", "vae_mlp", "--set", "encoder.hidden=big"),
            "--set: vae_mlp.encoder.hidden: expected a list of ints, got 'big'",
        ),
        (("eval", "/nonexistent/run"), "/nonexistent/run: no such run directory"),
        (("list", "encodr"), "unknown kind 'encodr' (did you mean 'encoder'?)"),
        (("train", "cvae_quadrants", "--set", "decoder={name: conv}"), "decoder 'conv' could not be built"),
        (("train", "iaf_vae", "--set", "encoder.steps=0"), "--set: iaf_vae.encoder.steps: expected an int >= 1, got 0"),
        (
            ("train", "planar_vae", "--set", "encoder.steps=-2"),
            "--set: planar_vae.encoder.steps: expected an int >= 1, got -2",
        ),
        (
            ("train", "vq_vae", "--set", "encoder.codebook_size=0"),
            "--set: vq_vae.encoder.codebook_size: expected an int >= 1, got 0",
        ),
        (
            ("train", "info_vae", "--set", "objective.kernel=gauss"),
            "--set: info_vae.objective.kernel: expected one of 'imq', 'rbf', got 'gauss'",
        ),
        (
            ("train", "wae_mmd", "--set", "objective.kernel=laplace"),
            "--set: wae_mmd.objective.kernel: expected one of 'imq', 'rbf', got 'laplace'",
        ),
    ],
)
def test_bad_input_gets_one_clear_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(zoo_in_process(capsys, *args), message)


def test_bad_input_in_a_process_exits_2_with_one_clear_line(tmp_path):
    """The same refusal from a real `zoo` process: its exit status and all it wrote to stderr,
    import-time warnings of its dependencies included."""
    assert_clean_error(
        zoo("train", "vae_mpl", cwd=tmp_path, check=False), "unknown variant 'vae_mpl' (did you mean 'vae_mlp'?)"
    )


def test_a_bad_option_in_a_recipe_file_is_named_with_its_file(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("flow:\n  base: iaf_vae\n  encoder: {steps: 0}\n")
    assert_clean_error(
        zoo_in_process(capsys, "--recipes", str(mine), "show", "flow"),
        f"{mine}: flow.encoder.steps: expected an int >= 1, got 0",
    )


@pytest.mark.slow  # evaluation in a zoo subprocess
def test_a_vq_vae_reports_its_log_likelihood_as_not_defined(tmp_path, vq_run):
    run = tmp_path / "vq"
    shutil.copytree(vq_run, run)  # the session's trained vq_vae (tests/conftest.py); zoo eval records in it
    evaluation = json.loads(zoo("eval", str(run), "-k", "10", "--limit", "50").stdout)
    assert evaluation["log_likelihood"] is None and "point mass" in evaluation["log_likelihood_undefined"]
    assert 1.0 <= evaluation["codebook_perplexity"] <= 64 and "elbo" in evaluation


def test_a_bad_recipe_file_is_named(tmp_path, capsys):
    bad = tmp_path / "mine.yaml"
    bad.write_text("mine:\n  base: vae_mlp\n  train: {steps: [1\n")
    assert_clean_error(zoo_in_process(capsys, "--recipes", str(bad), "show", "mine"), f"{bad}: invalid YAML at line 4")


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "zoo-linear-plugin"
version = "0.0.1"

[project.entry-points.vae_zoo]
linear = "zoo_linear_plugin"
"""

PLUGIN_MODULE = '''
"""A third-party plugin: a linear Gaussian encoder."""
import distrax
import jax.numpy as jnp
from flax import nnx

import zoo


class LinearEncoder(nnx.Module):
    def __init__(self, x_shape, latent_dim, rngs):
        size = 1
        for d in x_shape:
            size *= d
        self.loc = nnx.Linear(size, latent_dim, rngs=rngs)
        self.log_scale = nnx.Param(jnp.zeros(latent_dim))

    def __call__(self, x, c=None):
        loc = self.loc(x.reshape((x.shape[0], -1)))
        return distrax.MultivariateNormalDiag(loc, jnp.exp(self.log_scale[...]) * jnp.ones_like(loc))


def make_linear_encoder(x_shape, latent_dim, rngs):
    """A linear encoder from a package of its own."""
    return LinearEncoder(x_shape, latent_dim, rngs)


@zoo.hookimpl
def register_components(register):
    register("encoder", "linear", make_linear_encoder)


def linear_size(args, registry):
    """Prints the linear encoder's parameter count for a latent size."""
    print(registry.get("encoder", "linear").plugin, 64 * args.latent_dim + args.latent_dim + args.latent_dim)


@zoo.hookimpl
def register_commands(register):
    register("linear-size", linear_size, help="the linear encoder's size on the digits").add_argument("latent_dim", type=int)
'''


@pytest.mark.slow  # pip-installs a plugin package, then trains with it
def test_third_party_plugin_installs_lists_and_trains(tmp_path):
    source = tmp_path / "src"
    (source / "zoo_linear_plugin").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (source / "zoo_linear_plugin" / "__init__.py").write_text(PLUGIN_MODULE)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {"PYTHONPATH": str(site)}
    listing = zoo("list", "encoder", env=env).stdout
    assert "linear" in listing and "A linear encoder from a package of its own." in listing
    plugins = zoo("plugins", env=env).stdout.splitlines()
    assert plugins[plugins.index("linear  (zoo-linear-plugin 0.0.1)") + 1] == "    encoder:linear, command:linear-size"
    assert zoo("linear-size", "4", env=env).stdout == "linear 264\n"  # a command, found through the entry point
    assert "zoo linear-size [-h] latent_dim" in zoo("linear-size", "--help", env=env).stdout
    recipes = tmp_path / "mine.yaml"
    recipes.write_text(
        textwrap.dedent("""
        linear_vae:
          base: vae_mlp
          encoder: {name: linear}
          train: {steps: 10, log_every: 5}
    """)
    )
    run = tmp_path / "run"
    out = zoo("--recipes", str(recipes), "train", "linear_vae", "--workdir", str(run), "--quiet", env=env).stdout
    assert json.loads(out)["step"] == 10
    # Without the package the name is unknown, and the message says which encoders exist.
    assert_clean_error(zoo("--recipes", str(recipes), "show", "linear_vae", check=False), "unknown encoder 'linear'")
