"""Bad input to every command: exit status 2, one `zoo: error:` line naming the bad thing, no
traceback, and nothing written. Run in-process (`zoo.cli.main.main`), so a hundred cases take seconds.

Placeholders in the arguments: {run} a trained unconditional run, {cvae} a trained CVAE,
{quad} a trained quadrant-completion run, {file} an existing file, {cwd} the working
directory, and the damaged runs and files made by `bad_files`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_RUN as TINY, train_tiny
from zoo.cli.main import main

CASES = [
    # recipes, overrides and recipe files
    (["list", "encodr"], "unknown kind 'encodr'"),
    (["show", "vae_mpl"], "unknown variant 'vae_mpl'"),
    (["show", "vae_mlp", "--set", "latent_dim=abc"], "latent_dim"),
    (["show", "vae_mlp", "--set", "latent_dim=0"], "latent_dim: expected positive sizes"),
    (["show", "vae_mlp", "--set", "latent_dim=-3"], "latent_dim"),
    (["show", "vae_mlp", "--set", "nokey=1"], "nokey"),
    (["show", "vae_mlp", "--set", "noequals"], "noequals"),
    (["show", "vae_mlp", "--set", "=3"], "--set"),
    (["show", "vae_mlp", "--set", "latent_dim=[1,"], "latent_dim"),
    (["show", "vae_mlp", "--set", "encoder.name=nosuch"], "nosuch"),
    (["show", "vae_mlp", "--set", "encoder.hiden=[3]"], "hiden"),
    (["show", "vae_mlp", "--set", "encoder.hidden=big"], "encoder.hidden"),
    (["show", "vae_mlp", "--set", "train.batch_size=0"], "train.batch_size"),
    (["show", "vae_mlp", "--set", "train.batch_size=-5"], "train.batch_size"),
    (["show", "vae_mlp", "--set", "train.learning_rate=-1"], "train.learning_rate"),
    (["show", "vae_mlp", "--set", "train.steps=0"], "train.steps"),
    (["show", "vae_mlp", "--set", "train.optimizer={name: nosuch}"], "nosuch"),
    (["show", "vae_mlp", "--set", "train.optimizer={name: adam, bogus: 1}"], "bogus"),
    (["show", "vae_mlp", "--set", "train.schedule={name: nosuch}"], "nosuch"),
    (["show", "vae_mlp", "--set", "train.early_stopping={patience: 0}"], "patience"),
    (["show", "vae_mlp", "--set", "train.early_stopping={patience: 5, metric: nosuch}"], "metric"),
    (["show", "vae_mlp", "--set", "train.validate_every=0"], "validate_every"),
    (["show", "vae_mlp", "--set", "train.epochs=-1"], "train.epochs"),
    (["show", "vae_mlp", "--set", "train.clip_grad_norm=-1"], "clip_grad_norm"),
    (["show", "vae_mlp", "--set", "likelihood=nosuch"], "nosuch"),
    # issue 28: parameter groups and the families that need them (a sampler fitted on a run with no
    # training split, the fifth, is refused by the API that loads a run and by `zoo sample --sampler`:
    # tests/test_regularised.py, tests/test_fitted_samplers.py)
    (
        ["show", "vae_mlp", "--set", "train.parameter_groups.discriminator.learning_rate=1e-4"],
        "train.parameter_groups.discriminator: objective 'elbo' has no discriminator",
    ),
    (["show", "vae_mlp", "--set", "objective.discriminator_hidden=[8]"], "objective.discriminator_hidden"),
    (
        ["show", "piwae", "--set", "train.parameter_groups.decoderr.learning_rate=1e-4"],
        "train.parameter_groups.decoderr: objective 'piwae' has no parameter group 'decoderr'",
    ),
    (["show", "factor_vae", "--set", "train.parameter_groups.discriminator.learning_rate=-1"], "learning_rate"),
    (
        ["train", "annealed_vae", "--workdir", "w", "--set", "objective.capacity_start=30"],
        "capacity_end: the capacity schedule decreases",
    ),
    (["train", "miwae", "--workdir", "w", "--set", "train.batch_size=2"], "num_estimates: M = 4"),
    (["show", "vae_mlp", "--set", "dataset={name: nosuch}"], "nosuch"),
    (["show", "vae_mlp", "--set", "objective.name=nosuch"], "nosuch"),
    (["show", "vae_mlp", "--set", "train.seed=-1"], "train.seed"),
    (["show", "vae_mlp", "--set", "train.devices=-2"], "train.devices"),
    (["--recipes", "missing.yaml", "list"], "missing.yaml"),
    (["--recipes", "{latin1}", "list"], "not UTF-8"),
    (["--recipes", "{bad_yaml}", "list"], "invalid YAML"),
    (["--recipes", "{list_yaml}", "list"], "list_yaml.yaml"),
    (["--recipes", "{cwd}", "list"], "cannot read"),
    (["--recipes", "{unknown_base}", "show", "mine"], "nosuch_base"),
    # train
    (["train", "vae_mpl"], "unknown variant 'vae_mpl'"),
    (["train", "vae_mlp", "--task", "nosuch"], "nosuch"),
    (["train", "vae_mlp", "--devices", "-1"], "--devices"),
    (["train", "vae_mlp", "--devices", "abc"], "--devices"),
    (["train", "vae_mlp", "--devices", "64", "--set", "train.steps=5"], "device"),
    (["train", "vae_mlp", "--workdir", "{file}"], "is not a directory"),
    (["train", "vae_mlp", "--workdir", "{file}/run"], "is not a directory"),
    (["train", "vae_mlp", "--workdir", "w", "--set", "train.batch_size=5000"], "batch"),
    (["train", "vae_mlp", "--workdir", "{run}", *[w for s in TINY for w in ("--set", s)]], "already holds a run"),
    (
        ["train", "vae_mlp", "--workdir", "{run}", "--resume", "--set", "latent_dim=5"],
        "the recipe differs at latent_dim",
    ),
    (["train", "vae_mlp", "--coordinator", "x:1"], "need --distributed"),
    (["train", "vae_mlp", "--rendezvous-timeout", "30"], "need --distributed"),
    (["train", "vae_mlp", "--distributed", "--rendezvous-timeout", "0"], "--rendezvous-timeout"),
    (  # refused before joining the job: it would wait for the other process first
        [
            "train",
            "vae_mlp",
            "--workdir",
            "{run}",
            *[w for s in TINY for w in ("--set", s)],
            "--distributed",
            "--coordinator",
            "127.0.0.1:9",
            "--num-processes",
            "2",
            "--process-id",
            "1",
            "--rendezvous-timeout",
            "5",
        ],
        "already holds a run",
    ),
    (["train", "vae_mlp", "--num-processes", "0"], "--num-processes"),
    (["train", "vae_mlp", "--process-id", "-1"], "--process-id"),
    (["train", "vae_mlp", "--workdir", "w", "--set", "objective.free_bits=-1"], "free_bits"),
    (
        ["train", "vae_mlp", "--workdir", "w", "--set", "objective.kl_warmup_steps=100000", "--set", "train.steps=10"],
        "warm",
    ),
    (["train", "cvae_mlp", "--workdir", "w", "--set", "prior={name: vampprior}"], "vampprior"),
    (
        [
            "train",
            "vae_mlp",
            "--workdir",
            "w",
            "--set",
            "train.schedule={name: warmup_cosine_decay, warmup_steps: -5, decay_steps: 10}",
        ],
        "warmup_steps",
    ),
    (
        ["train", "cvae_quadrants", "--workdir", "w", "--set", "decoder={name: conv}"],
        "decoder 'conv' could not be built",
    ),
    (["train", "vae_mlp", "--workdir", "w", "--set", "objective={name: iwae, num_samples: 0}"], "num_samples"),
    (["train", "cvae_sohn", "--workdir", "w", "--set", "objective.alpha=2"], "alpha"),
    (
        ["train", "vae_mlp", "--workdir", "w", "--set", "dataset={name: fashion_mnist}", "--data-dir", "/nonexistent"],
        "/nonexistent",
    ),
    (["train", "vae_mlp", "--workdir", "w", "--set", "encoder.hidden=[0]"], "hidden sizes must be positive"),
    (
        ["train", "vae_mlp", "--workdir", "w", "--set", "dataset.validation_size=-1"],
        "vae_mlp.dataset.validation_size: expected an int >= 0, got -1",
    ),
    (["train", "vae_mlp", "--workdir", "w", "--set", "prior={name: mixture, num_components: 0}"], "num_components"),
    (
        ["train", "vae_mlp", "--workdir", "w", "--set", "prior={name: vampprior, num_pseudo_inputs: 0}"],
        "num_pseudo_inputs",
    ),
    (
        ["train", "vae_mlp", "--workdir", "w", "--set", "objective={name: beta_elbo, beta: -1}"],
        "vae_mlp.objective.beta: expected a float >= 0, got -1",
    ),
    (["train", "vae_mlp", "--workdir", "w", "--set", "train.learning_rate=.inf"], "train.learning_rate"),
    (["train", "vae_mlp", "--workdir", "w", "--set", "encoder.log_variance_bounds=[2, -6]"], "log_variance_bounds"),
    # settings of which one would win unsaid, and settings the budget leaves without effect
    (
        ["train", "vae_mlp", "--workdir", "w", "--set", "train.steps=2", "--set", "train.epochs=3"],
        "--set: vae_mlp: train.steps (2) and train.epochs (3) are both given, and only one of them can count",
    ),
    (["show", "vae_mlp", "--set", "train={steps: 2, epochs: 3}"], "train.steps (2) and train.epochs (3) are both"),
    (["--recipes", "{both_budgets}", "show", "mine"], "both.yaml: mine: train.steps (10) and train.epochs (2)"),
    (
        ["show", "vae_mlp", "--set", "objective.kl_warmup_steps=5", "--set", "objective.kl_warmup_epochs=1"],
        "objective.kl_warmup_steps (5) and objective.kl_warmup_epochs (1) are both given",
    ),
    (
        [
            "show",
            "vae_mlp",
            "--set",
            "train.learning_rate=0.01",
            "--set",
            "train.schedule={name: cosine_decay, decay_steps: 100, init_value: 0.1}",
        ],
        "train.learning_rate (0.01) and train.schedule.init_value (0.1) are both given",
    ),
    (
        ["show", "vae_mlp", "--set", "train.validate_every=5000", "--set", "train.early_stopping={patience: 5}"],
        "vae_mlp.train.early_stopping: patience 5 needs 6 validations to stop a run, and validating every 5000 "
        "steps (train.validate_every) leaves 1 in the budget of 3000 steps (train.steps): it could never stop",
    ),
    (
        ["show", "vae_mlp", "--set", "train.early_stopping={patience: 10}"],
        "500 steps (train.checkpoint_every, as train.validate_every is null) leaves 6 in the budget",
    ),
    (
        [
            "show",
            "vae_mlp",
            "--set",
            "train.epochs=3",
            "--set",
            "train.validate_every=epoch",
            "--set",
            "train.early_stopping={patience: 3}",
        ],
        "validating every epoch leaves 3 in the budget of 3 epochs (train.epochs)",
    ),
    (
        ["show", "vae_mlp", "--set", "train.schedule={name: cosine_decay, decay_steps: 20000}"],
        "vae_mlp.train.schedule: cosine_decay runs 20000 steps, beyond the budget of 3000 steps (train.steps)",
    ),
    (
        [
            "show",
            "vae_mlp",
            "--set",
            "train.steps=100",
            "--set",
            "train.schedule={name: warmup_cosine_decay, warmup_steps: 10, decay_steps: 200}",
        ],
        "warmup_cosine_decay runs 200 steps, beyond the budget of 100 steps",
    ),
    (
        [
            "train",
            "vae_mlp",
            "--workdir",
            "w",
            "--set",
            "dataset.validation_size=0",
            "--set",
            "train.early_stopping={patience: 2}",
            "--set",
            "train.validate_every=10",
        ],
        "vae_mlp.train.early_stopping: it watches the validation split, which dataset 'digits' leaves empty",
    ),
    (
        ["train", "vae_mlp", "--task", "unconditional", "--set", "condition={name: onehot_label}"],
        "--task and --set condition={name: onehot_label} both set condition; give one of them",
    ),
    (
        ["train", "vae_mlp", "--devices", "2", "--set", "train.devices=4"],
        "--devices and --set train.devices=4 both set train.devices",
    ),
    # eval
    (["eval", "/nonexistent"], "/nonexistent: no such run directory"),
    (["eval", "{empty}"], "holds no run"),
    (["eval", "{file}"], "no such run directory"),
    (["eval", "{run}", "-k", "-1"], "--num-samples"),
    (["eval", "{run}", "-k", "²"], "--num-samples"),
    (["eval", "{run}", "--batch-size", "0"], "--batch-size"),
    (["eval", "{run}", "--limit", "0"], "--limit"),
    (["eval", "{run}", "--limit", "-5"], "--limit"),
    (["eval", "{run}", "--seed", "-1"], "--seed"),
    (["eval", "{run}", "--seed", "99999999999999999999"], "--seed"),
    (["eval", "{run}", "--split", "bogus"], "--split"),
    (["eval", "{run}", "--checkpoint", "oldest"], "--checkpoint"),
    (["eval", "{run}", "--devices", "-1"], "--devices"),
    (["eval", "{no_checkpoint}"], "holds no checkpoint"),
    (["eval", "{mismatch}"], "does not match the run's recipe.yaml"),
    (["eval", "{all_damaged}", "--checkpoint", "newest"], "no readable checkpoint"),
    (["eval", "{bad_recipe}"], "invalid YAML"),
    (["eval", "{latin1_recipe}"], "not UTF-8"),
    (["eval", "{list_recipe}"], "expected a recipe mapping"),
    (["eval", "{run}", "--disentanglement"], "--disentanglement: dataset 'digits' has no ground-truth factors"),
    (["eval", "{run}", "--disentanglement", "--disentanglement-examples", "5"], "--disentanglement-examples"),
    # sample
    (["sample", "{run}", "--per-row", "0"], "--per-row"),
    (["sample", "{run}", "--per-row", "1000"], "--per-row"),
    (["sample", "{run}", "--temperature", "nan"], "--temperature"),
    (["sample", "{run}", "--temperature", "-1"], "--temperature"),
    (["sample", "{run}", "--temperature", "inf"], "--temperature"),
    (["sample", "{run}", "--temperature", "abc"], "--temperature"),
    (["sample", "{run}", "--seed", "-1"], "--seed"),
    (["sample", "{cvae}", "--condition", "²"], "unknown class '²'"),
    (["sample", "{cvae}", "--condition", ""], "empty condition"),
    (["sample", "{cvae}", "--condition", "12a"], "unknown class '12a'"),
    (["sample", "{cvae}", "--condition", "nosuch"], "unknown class 'nosuch'"),
    (["sample", "{run}", "--condition", "3"], "unconditional"),
    (["sample", "{quad}", "--condition", "²"], "give indices of test images"),
    (["sample", "{quad}", "--condition", "100000"], "test image indices must lie in"),
    (["sample", "{run}", "--out", "{cwd}"], "is a directory"),
    (["sample", "{run}", "--out", "x.bmpx"], "cannot write an image of type '.bmpx'"),
    (["sample", "{run}", "--out", "x"], "(no extension)"),
    (["sample", "{run}", "--out", "{file}/x.png"], "is not a directory"),
    (["sample", "/nonexistent"], "no such run directory"),
    # issue 29: samplers fitted after training (the runs they do not suit: tests/test_fitted_samplers.py)
    (["sample", "{run}", "--sampler", "pixelcnn_codes"], "sampler 'pixelcnn_codes' does not suit run"),
    (["sample", "{run}", "--sampler", "nosuch"], "unknown sampler 'nosuch'"),
    (["sample", "{run}", "--sampler", "maf_fitted", "--set", "sampler.layers=0"], "sampler.layers"),
    (["sample", "{run}", "--set", "sampler.layers=2"], "with --sampler NAME"),
    # plot
    (["plot", "{run}", "--out", "{file}"], "cannot write the figures there"),
    (["plot", "/nonexistent"], "no such run directory"),
    (["plot", "{run}", "--seed", "-3"], "--seed"),
    (["plot", "{damaged_log}"], "metrics.jsonl:2: not a JSON line"),
    # bench
    (["bench", "nosuch"], "unknown suite 'nosuch'"),
    (["bench", "{suite_bad_key}"], "colours"),
    (["bench", "{suite_latin1}"], "not UTF-8"),
    (["bench", "{suite_bad_yaml}"], "invalid YAML"),
    (["bench", "{suite_bad_budget}"], "budget.steps"),
    (["bench", "{suite_unknown_variant}"], "vae_mpl"),
    (
        ["bench", "{suite_disentanglement}"],
        "s6.yaml: eval.disentanglement: dataset 'digits' has no ground-truth factors",
    ),
    (["bench", "{suite_bad_disentanglement}"], "eval.disentanglement: expected a boolean"),
    (["bench", "quick", "--variants", "nosuch"], "nosuch"),
    (["bench", "quick", "--out", "{file}"], "is not a directory"),
    # compare
    (["compare", "missing.jsonl"], "no such results file"),
    (["compare", "{metrics_log}"], "not a run's training log"),
    (["compare", "{damaged_results}"], "results.jsonl:1: not a JSON line"),
    (["compare", "{results}", "--report", "{file}"], "is not a directory"),
    # serve
    (["serve", "{run}", "--port", "-1"], "--port"),
    (["serve", "{run}", "--port", "70000"], "--port"),
    (["serve", "{run}", "--port", "abc"], "--port"),
    (["serve", "/nonexistent"], "no such run directory"),
    (["serve", "{run}", "--request-timeout", "0"], "--request-timeout"),
    (["serve", "{run}", "--request-timeout", "nan"], "--request-timeout"),
    (["serve", "{run}", "--max-connections", "0"], "--max-connections"),
    (["serve", "{quad}", "--port", "0"], "neither class-conditional nor absent"),
    # export-web
    (["export-web", "{cvae}", "{file}"], "is not a directory"),
    (["export-web", "{cvae}", "out", "--per-class", "0"], "--per-class"),
    (["export-web", "/nonexistent", "out"], "no such run directory"),
    (["export-web", "{cvae}", "out", "--seed", "x"], "--seed"),
    (["export-web", "{empty}", "out"], "holds no run"),
]


@pytest.fixture(scope="module")
def places(book, registry, tmp_path_factory, tiny_vae_run, tiny_cvae_run) -> dict[str, Path]:
    """The runs and damaged files the placeholders name (made once; the unconditional run and
    the CVAE are the session's shared runs, which every case here must leave as they are)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    places = {
        "run": tiny_vae_run,
        "cvae": tiny_cvae_run,
        "quad": train_tiny(book, registry, "cvae_quadrants", root / "quad"),
    }
    run = places["run"]

    def copy(name: str) -> Path:
        places[name] = root / name
        shutil.copytree(run, places[name])
        return places[name]

    (root / "empty").mkdir()
    places["empty"] = root / "empty"
    shutil.rmtree(copy("no_checkpoint") / "checkpoints")
    shutil.rmtree(places["no_checkpoint"] / "best")
    recipe = copy("mismatch") / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("latent_dim: 2", "latent_dim: 3"))
    for checkpoint in (copy("all_damaged") / "checkpoints").iterdir():
        for path in checkpoint.rglob("*"):
            if path.is_file():
                path.write_bytes(b"\x00")
    (copy("bad_recipe") / "recipe.yaml").write_text("variant: vae_mlp\nlatent_dim: [2\n")
    (copy("latin1_recipe") / "recipe.yaml").write_bytes("variant: vae_mlp\ndescription: caf\xe9\n".encode("latin-1"))
    (copy("list_recipe") / "recipe.yaml").write_text("- 1\n- 2\n")
    with open(copy("damaged_log") / "metrics.jsonl", "r+") as log:
        lines = log.read().splitlines()
        log.seek(0)
        log.write("\n".join([lines[0], '{"step": ', *lines[1:]]) + "\n")
    places["metrics_log"] = run / "metrics.jsonl"
    files = {
        "latin1": ("mine.yaml", "mine:\n  base: vae_mlp\n  description: caf\xe9\n".encode("latin-1")),
        "bad_yaml": ("bad.yaml", b"mine:\n  base: vae_mlp\n  train: {steps: [1\n"),
        "list_yaml": ("list_yaml.yaml", b"- vae_mlp\n"),
        "unknown_base": ("base.yaml", b"mine:\n  base: nosuch_base\n"),
        "both_budgets": ("both.yaml", b"mine:\n  base: vae_mlp\n  train: {steps: 10, epochs: 2}\n"),
        "suite_bad_key": ("s1.yaml", b"name: s1\nvariants: [vae_mlp]\ncolours: [red]\n"),
        "suite_latin1": ("s2.yaml", "name: s2\ndescription: caf\xe9\nvariants: [vae_mlp]\n".encode("latin-1")),
        "suite_bad_yaml": ("s3.yaml", b"name: s3\nvariants: [vae_mlp\n"),
        "suite_bad_budget": ("s4.yaml", b"name: s4\nvariants: [vae_mlp]\nbudget: {steps: -5}\n"),
        "suite_unknown_variant": ("s5.yaml", b"name: s5\nvariants: [vae_mpl]\n"),
        "suite_disentanglement": (
            "s6.yaml",
            b"name: s6\nvariants: [vae_mlp]\nbudget: {steps: 10}\neval: {disentanglement: true}\n",
        ),
        "suite_bad_disentanglement": (
            "s7.yaml",
            b"name: s7\nvariants: [vae_mlp]\neval: {disentanglement: yes please}\n",
        ),
        "damaged_results": ("results.jsonl", b'{"suite": "quick", "run\n{"a": 1}\n'),
    }
    for key, (name, data) in files.items():
        (root / "files").mkdir(exist_ok=True)
        places[key] = root / "files" / name
        places[key].write_bytes(data)
    good = {
        "suite": "quick",
        "run": "vae_mlp-seed0",
        "variant": "vae_mlp",
        "dataset": "digits",
        "task": "unconditional",
        "seed": 0,
        "elbo": -30.0,
    }
    places["results"] = root / "files" / "good.jsonl"
    places["results"].write_text(json.dumps(good) + "\n")
    return places


def fill(text: str, values: dict[str, str]) -> str:
    """The placeholders {name} in `text` replaced (YAML braces such as {name: adam} left alone)."""
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match.group(1), match.group(0)), text)


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under `roots` with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for root in roots for p in root.rglob("*") if p.is_file()}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's refusals
        status = exit_.code
    return status, capsys.readouterr().err


def test_there_are_at_least_a_hundred_cases():
    assert len(CASES) >= 100
    assert len({tuple(args) for args, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("args", "fragment"), CASES, ids=[" ".join(args)[:60] for args, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, fragment, places, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a directory\n")
    values = {**{k: str(v) for k, v in places.items()}, "file": str(tmp_path / "a_file"), "cwd": str(tmp_path)}
    argv = [fill(arg, values) for arg in args]
    before = snapshot(tmp_path, *places.values())
    status, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (argv, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    assert fill(fragment, values) in lines[0], lines[0]
    assert snapshot(tmp_path, *places.values()) == before, "a refused command wrote or changed files"


SET_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True).map(str),
    st.lists(st.integers(-5, 5), max_size=3).map(str),
    st.sampled_from(["null", "[", "{", "]", "a: b", "''"]),
)
SET_KEYS = st.sampled_from(
    [
        "latent_dim",
        "encoder.hidden",
        "encoder.activation",
        "train.batch_size",
        "train.learning_rate",
        "train.steps",
        "train.epochs",
        "train.seed",
        "prior.name",
        "objective.kl_warmup_epochs",
        "train.early_stopping",
        "train.schedule",
        "train.optimizer",
        "dataset.validation_size",
        "nokey",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=SET_KEYS, value=SET_VALUES)
def test_any_set_value_is_accepted_or_refused_in_one_line(key, value, capsys):
    status, err = run_cli(["show", "vae_mlp", "--set", f"{key}={value}"], capsys)
    assert status in (0, 2) and "Traceback" not in err
    if status == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err


RECIPE_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(-1e3, 1e3), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    section=st.sampled_from(
        [
            "encoder",
            "decoder",
            "prior",
            "likelihood",
            "objective",
            "dataset",
            "train",
            "latent_dim",
            "condition",
            "base",
            "description",
        ]
    ),
    value=RECIPE_VALUES,
)
def test_any_recipe_structure_is_accepted_or_refused_in_one_line(section, value, tmp_path_factory, capsys):
    path = tmp_path_factory.mktemp("recipes") / "mine.yaml"
    path.write_text(json.dumps({"mine": {"base": "vae_mlp", section: value}}))  # JSON is YAML
    status, err = run_cli(["--recipes", str(path), "show", "mine"], capsys)
    assert status in (0, 2) and "Traceback" not in err, err
    if status == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    os.remove(path)
