"""The Python API (zoo.train, zoo.load, zoo.build, zoo.compare, zoo.Run), checked against the
mathematics of what each method means and against the `zoo` command it sits under."""

import json

import numpy as np
import pytest
import yaml

import zoo
from zoo.cli import main as cli
from zoo.training import runs
from zoo.progress import Progress, duration
from tests.conftest import TINY_RUN as SMALL  # 30 steps, validated and checkpointed every 15, a 2-D latent


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return zoo.train("vae_mlp", tmp_path_factory.mktemp("api") / "vae", overrides=SMALL, progress=False)


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    # the shapes of the session's shared CVAE (tests/conftest.py): its programs are compiled already
    return zoo.train(
        "cvae_mlp", tmp_path_factory.mktemp("api") / "cvae", overrides=[*SMALL, "latent_dim=4"], progress=False
    )


def test_train_returns_the_trained_run_at_its_best_checkpoint(vae_run):
    assert isinstance(vae_run, zoo.Run)
    assert vae_run.summary["step"] == 30 and vae_run.step == vae_run.summary["best_step"]
    assert vae_run.checkpoint == "best" and vae_run.variant == "vae_mlp"
    assert vae_run.recipe["latent_dim"] == 2
    assert [r["step"] for r in vae_run.metrics if r["split"] == "validation"] == [15, 30]
    loaded = zoo.load(vae_run.workdir)
    assert loaded.step == vae_run.step
    for a, b in zip(jax_leaves(loaded.params), jax_leaves(vae_run.params)):
        np.testing.assert_array_equal(a, b)
    assert zoo.load(vae_run.workdir, checkpoint="newest").step == 30


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_samples_are_likelihood_means_of_the_dataset_shape(vae_run):
    x = vae_run.sample(16, seed=0)
    assert x.shape == (16, 8, 8, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0  # Bernoulli means
    np.testing.assert_array_equal(x, vae_run.sample(16, seed=0))
    assert not np.array_equal(x, vae_run.sample(16, seed=1))
    # temperature 0 puts every z at the prior mean: one image, repeated
    still = vae_run.sample(3, seed=5, temperature=0.0)
    np.testing.assert_allclose(still[0], still[2], atol=1e-6)


def test_encode_decode_reconstruct_agree(vae_run):
    images = vae_run.experiment.dataset.test.images[:10]
    z = vae_run.encode(images)
    assert z.shape == (10, 2)
    np.testing.assert_allclose(vae_run.reconstruct(images), vae_run.decode(z), atol=1e-6)  # decoding the posterior mean
    # the posterior mean is what the model's own encoder gives
    np.testing.assert_allclose(z, np.asarray(vae_run.model.encode(images.reshape(10, 8, 8, 1)).mean()), atol=1e-6)


def test_log_likelihood_is_the_importance_sampled_bound_eval_reports(vae_run):
    images = vae_run.experiment.dataset.test.images[:20]
    per_example = vae_run.log_likelihood(images, num_samples=200, seed=0)
    assert per_example.shape == (20,) and np.all(per_example < 0)
    # K = 200 estimates of one quantity with different draws agree closely; the bound from one
    # sample (the ELBO) lies below on average
    again = vae_run.log_likelihood(images, num_samples=200, seed=1)
    assert abs(float(np.mean(per_example - again))) < 0.5
    result = vae_run.evaluate("test", 200, limit=20, record=False)
    assert result["elbo"] < result["log_likelihood"]
    assert abs(result["log_likelihood"] - float(np.mean(per_example))) < 0.5


def test_evaluate_is_what_zoo_eval_prints_and_records(vae_run, capsys):
    result = vae_run.evaluate("test", 50, limit=30, seed=3)
    assert cli.main(["eval", str(vae_run.workdir), "-k", "50", "--limit", "30", "--seed", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))  # the command is the method
    assert vae_run.evaluations["test"]["50"]["log_likelihood"] == pytest.approx(result["log_likelihood"])


def test_a_class_conditional_run_samples_the_classes_asked_for(cvae_run):
    x = cvae_run.sample(condition=[2, 0, 2, 6], seed=0)
    assert x.shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(x, cvae_run.sample(condition="2026", seed=0))  # text as typed, one class per digit
    assert cvae_run.sample(2, condition=[7], seed=0).shape == (2, 8, 8, 1)
    with pytest.raises(zoo.ZooError, match="conditional: pass condition="):
        cvae_run.sample(4)
    with pytest.raises(zoo.ZooError, match="labels="):
        cvae_run.encode(cvae_run.experiment.dataset.test.images[:2])
    labels = cvae_run.experiment.dataset.test.labels[:6]
    images = cvae_run.experiment.dataset.test.images[:6]
    np.testing.assert_allclose(
        cvae_run.reconstruct(images, labels), cvae_run.decode(cvae_run.encode(images, labels), labels), atol=1e-6
    )


def test_bad_arguments_are_named(vae_run):
    with pytest.raises(zoo.ZooError, match=r"images must be \(N, 8, 8, 1\), got \(3, 28, 28, 1\)"):
        vae_run.encode(np.zeros((3, 28, 28, 1)))
    with pytest.raises(zoo.ZooError, match="unconditional: it takes no condition"):
        vae_run.sample(condition=[1])
    with pytest.raises(zoo.ZooError, match="checkpoint must be one of best, newest"):
        zoo.load(vae_run.workdir, checkpoint="latest")
    with pytest.raises(zoo.RunDirectoryError, match="no such run directory"):
        zoo.load(vae_run.workdir / "nothing")
    with pytest.raises(zoo.RecipeError, match="expected a mapping or a list"):
        zoo.build("vae_mlp", overrides="latent_dim=3")


def test_build_gives_an_untrained_model_of_the_recipe():
    model = zoo.build("cvae_sohn", overrides={"latent_dim": 3})
    assert isinstance(model, zoo.LatentVariableModel) and model.conditional
    with pytest.raises(zoo.RecipeError, match="latent_dim"):
        zoo.build("vae_mlp", overrides=["latent_dim=0"])


def test_compare_takes_run_directories_and_gives_the_table_as_rows(vae_run, cvae_run, capsys):
    vae_run.evaluate("test", 20, limit=20)  # the run's evaluation with the most samples counts
    vae_run.evaluate("test", 300, limit=20)
    cvae_run.evaluate("test", 20, limit=20)
    rows = zoo.compare([vae_run.workdir, cvae_run.workdir])
    assert [r["variant"] for r in rows] == ["vae_mlp", "cvae_mlp"]
    assert rows[0]["seeds"] == 1 and rows[0]["-ELBO"] == pytest.approx(-vae_run.evaluations["test"]["300"]["elbo"])
    assert rows[0]["NLL (IS)"] == pytest.approx(-vae_run.evaluations["test"]["300"]["log_likelihood"])
    assert rows[1]["cond. NLL (IS)"] == pytest.approx(-cvae_run.evaluations["test"]["20"]["conditional_log_likelihood"])
    assert cli.main(["compare", str(vae_run.workdir), str(cvae_run.workdir)]) == 0
    printed = capsys.readouterr().out
    assert "| vae_mlp | 1 |" in printed and "| cvae_mlp | 1 |" in printed


def test_compare_refuses_a_run_not_yet_evaluated_and_a_training_log(tmp_path, vae_run, capsys):
    fresh = zoo.train("vae_mlp", tmp_path / "fresh", overrides=[*SMALL, "train.steps=10"], progress=False)
    assert cli.main(["compare", str(fresh.workdir)]) == 2
    assert (
        f"{fresh.workdir} has not been evaluated (no eval.json); run `zoo eval {fresh.workdir}` first"
        in capsys.readouterr().err
    )
    (fresh.workdir / "eval.json").write_text('{"test": {"10')  # torn by a kill mid-write
    assert cli.main(["compare", str(fresh.workdir)]) == 2
    assert "has not been evaluated (a damaged eval.json); run `zoo eval" in capsys.readouterr().err
    assert cli.main(["compare", str(fresh.workdir / "metrics.jsonl")]) == 2
    assert "not a run's training log" in capsys.readouterr().err


def test_resume_reads_the_runs_own_recipe_and_records_a_changed_budget(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "vae_mlp",
                "--workdir",
                str(workdir),
                "--quiet",
                *[f"--set={setting}" for setting in [*SMALL, "train.steps=20"]],
            ]
        )
        == 0
    )
    capsys.readouterr()
    # no variant, no --set of the model: the run's own recipe (hidden 16, latent 2) continues
    assert cli.main(["train", "--resume", str(workdir), "--set", "train.steps=40", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["step"] == 40
    assert "train.steps: 20 in the run, 40 now" in captured.err and "recipe_history.jsonl" in captured.err
    history = [json.loads(line) for line in (workdir / runs.HISTORY_FILE).read_text().splitlines()]
    assert (
        history[0]["changed"] == ["train.steps: 20 in the run, 40 now"]
        and history[0]["previous_recipe"]["train"]["steps"] == 20
    )
    assert yaml.safe_load((workdir / "recipe.yaml").read_text())["train"]["steps"] == 40
    assert yaml.safe_load((workdir / "recipe.yaml").read_text())["encoder"]["hidden"] == [16]
    # the model may not change, and the variant must be the run's
    assert cli.main(["train", "--resume", str(workdir), "--set", "latent_dim=5"]) == 2
    assert "the recipe differs at latent_dim: 2 in the run, 5 now" in capsys.readouterr().err
    assert cli.main(["train", "cvae_mlp", "--resume", str(workdir)]) == 2
    assert "holds a run of 'vae_mlp', not 'cvae_mlp'" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
    assert cli.main(["train"]) == 2
    assert "give a VARIANT" in capsys.readouterr().err


def test_progress_in_a_log_is_a_line_every_few_seconds_with_the_time_left(capsys):
    with Progress(10, "eval", unit="examples", every=0.0, terminal=False) as bar:
        for _ in range(10):
            bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "zoo: eval: 1/10 examples (10%)"  # the first piece (compiling) gives no rate
    assert lines[1].startswith("zoo: eval: 2/10 examples (20%)") and "left" in lines[1]
    assert "\r" not in "".join(lines) and lines[-1].startswith("zoo: eval: 10/10 examples in ")
    with Progress(10, "quiet", every=60.0, terminal=False) as bar:  # ends before the first line is due
        bar.update(10)
    assert capsys.readouterr().err == ""
    assert [duration(s) for s in (42, 185, 3720)] == ["42 s", "3 min 05 s", "1 h 02 min"]
