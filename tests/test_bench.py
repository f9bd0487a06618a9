"""The benchmark harness on tiny budgets: suites, resumption, the table, the report."""

import json
import math
import re
import textwrap

import pytest

import zoo
from zoo.evaluation import bench, plots, report

TINY = """
name: tiny
variants: [vae_mlp, cvae_mlp]
seeds: [0, 1, 2]
budget: {steps: 6}
set: ["train.log_every=3", "encoder.hidden=[16]", "decoder.hidden=[16]", "latent_dim=2", "train.batch_size=16"]
eval: {num_samples: 5, limit: 20, accuracy_samples: 2}
"""


def write_suite(tmp_path, text=TINY, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_suite_errors_name_the_file_and_key(tmp_path, book):
    cases = [
        (TINY.replace("budget: {steps: 6}", "budget: {stepz: 6}"), "budget.stepz: unknown key (did you mean 'steps'?)"),
        (
            TINY.replace("[vae_mlp, cvae_mlp]", "[vae_mlp, cvae_mpl]"),
            "variants[1]: unknown variant 'cvae_mpl' (did you mean 'cvae_mlp'?)",
        ),
        (TINY.replace("seeds: [0, 1, 2]", "seeds: [0, one]"), "seeds: expected a list of int, got [0, 'one']"),
        (
            TINY.replace("budget: {steps: 6}", "budget: {steps: 6, epochs: 1}"),
            "budget: give exactly one of steps or epochs",
        ),
        (TINY + "optimiser: adam\n", "optimiser: unknown key"),
        (TINY.replace("eval: {", "eval: {split: tset, "), "eval.split: expected train, validation or test, got 'tset'"),
    ]
    for text, message in cases:
        path = write_suite(tmp_path, text)
        with pytest.raises(zoo.RecipeError) as info:
            bench.load_suite(str(path), book)
        assert str(info.value).startswith(f"{path}: {message}")
    with pytest.raises(zoo.UnknownComponentError, match="unknown suite 'quik' \\(did you mean 'quick'\\?\\)"):
        bench.load_suite("quik", book)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            TINY.replace("budget: {steps: 6}", "budget: {steps: -5}"),
            "budget.steps: expected an int >= 1 or null, got -5",
        ),
        (
            TINY.replace("budget: {steps: 6}", "budget: {epochs: .inf}"),
            "budget.epochs: expected a float > 0 or null, got inf",
        ),
        (TINY.replace("num_samples: 5", "num_samples: -1"), "eval.num_samples: expected an int >= 0, got -1"),
        (
            TINY.replace("eval: {", "eval: {proposals: [posterior, likelihood], "),
            "eval.proposals: expected a list of posterior and/or prior, got ['posterior', 'likelihood']",
        ),
        (
            TINY.replace("eval: {", "eval: {proposals: [], "),
            "eval.proposals: expected a list of posterior and/or prior, got []",
        ),
        (TINY + "variant_seeds: {vae_mlp: [0, x]}\n", "variant_seeds.vae_mlp: expected a list of ints, got [0, 'x']"),
        (TINY + "variant_seeds: {vae_mlp: []}\n", "variant_seeds.vae_mlp: expected at least one seed"),
        (
            TINY + "variant_seeds: {vae_mpl: [0]}\n",
            "variant_seeds.vae_mpl: unknown variant of this suite 'vae_mpl' (did you mean 'vae_mlp'?)",
        ),
        (TINY + "published: [{model: VAE, metric: NLL, value: 86.76}]\n", "published[0].source: missing"),
        (
            TINY + "published: [{model: VAE, metric: NLL, value: 86.76, source: x, colour: red}]\n",
            "published[0].colour: unknown key",
        ),
        (TINY + "datasets: [{pixels: binarize}]\n", "datasets[0]: missing 'name'"),
        (TINY.replace("variants: [vae_mlp, cvae_mlp]\n", ""), "variants: missing"),
        (TINY.replace("name: tiny", "name: [tiny]"), "name: expected a string or null, got ['tiny']"),
        ("[vae_mlp]\n", "expected a mapping of suite keys, got list"),
    ],
)
def test_suite_keys_are_checked_as_recipes_are(tmp_path, book, text, message):
    path = write_suite(tmp_path, text)
    with pytest.raises(zoo.RecipeError) as info:
        bench.load_suite(str(path), book)
    assert str(info.value).startswith(f"{path}: {message}")


def test_a_suite_reads_as_typed_sections(tmp_path, book):
    suite = bench.load_suite(
        str(write_suite(tmp_path, TINY + "published: [{model: VAE, metric: NLL, value: 86, source: x}]\n")), book
    )
    assert suite.budget == zoo.config.SuiteBudget(steps=6)
    assert suite.evaluation == zoo.config.SuiteEvaluation(num_samples=5, limit=20, accuracy_samples=2)
    assert suite.published == ({"model": "VAE", "metric": "NLL", "value": 86.0, "source": "x", "protocol": None},)


def test_expansion_and_overrides(tmp_path, book, registry):
    text = TINY + "tasks: [unconditional, {name: visible_quadrants, visible: [2]}]\ndatasets: [digits]\n"
    suite = bench.load_suite(str(write_suite(tmp_path, text)), book)
    runs = bench.expand(suite)
    assert len(runs) == 2 * 2 * 3
    recipe = bench.resolve_run(runs[-1], suite, book, registry, None)
    assert recipe["condition"] == {"name": "visible_quadrants", "visible": (2,)}
    assert recipe["train"]["seed"] == 2 and recipe["train"]["steps"] == 6
    assert bench.task_label(runs[-1].task) == "visible_quadrants visible=[2]"


@pytest.mark.slow  # a suite subprocess, killed
def test_a_killed_suite_continues_with_the_runs_it_had_not_finished(tmp_path, book, registry, monkeypatch):
    suite = bench.load_suite(str(write_suite(tmp_path)), book)
    out = tmp_path / "out"
    calls = []
    real_evaluate_run = bench.evaluate_run

    def dies_on_third_run(*args, **kwargs):
        calls.append(args[1].run_id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while evaluating the third run
        return real_evaluate_run(*args, **kwargs)

    monkeypatch.setattr(bench, "evaluate_run", dies_on_third_run)
    with pytest.raises(KeyboardInterrupt):
        bench.run_suite(suite, out, book, registry, log=lambda _: None)
    finished = sorted(p.parent.name for p in out.glob("runs/*/result.json"))
    assert len(finished) == 2
    calls.clear()
    monkeypatch.setattr(bench, "evaluate_run", real_evaluate_run)
    lines = []
    results = bench.run_suite(suite, out, book, registry, log=lines.append)
    assert sum("done earlier" in line for line in lines) == 2
    assert len(results) == 6 and len(set(r["run"] for r in results)) == 6
    records = report.read_results([out / "results.jsonl"])
    assert [r["run"] for r in records] == [r.run_id for r in bench.expand(suite)]
    record = records[-1]
    for key in (
        "recipe",
        "versions",
        "seed",
        "wall_seconds",
        "seconds_per_epoch",
        "elbo",
        "conditional_log_likelihood",
        "class_accuracy",
    ):
        assert key in record
    assert 0.0 <= record["class_accuracy"] <= 1.0
    # The report: table, learning curves, and the figures of `zoo plot` for each variant's first seed.
    path = report.write_report([out / "results.jsonl"], tmp_path / "report", registry)
    text = path.read_text()
    assert "| vae_mlp | 3 |" in text and "learning_curves.png" in text
    assert (tmp_path / "report" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    first_seeds = [run.run_id for run in bench.expand(suite) if run.seed == 0]
    assert len(first_seeds) == 2
    for run_id in first_seeds:
        for figure in plots.FIGURES:
            png = tmp_path / "report" / "figures" / run_id / f"{figure}.png"
            assert png.read_bytes()[:4] == b"\x89PNG"
            assert f"](figures/{run_id}/{figure}.png)" in text
    assert sorted(p.name for p in (tmp_path / "report" / "figures").iterdir()) == sorted(first_seeds)


def test_summary_and_confidence_interval_on_known_values():
    summary = report.summarize([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5
    assert summary["std"] == pytest.approx(math.sqrt(5 / 3))
    # t(0.975, 3) = 3.182446
    assert summary["ci95"] == pytest.approx(3.182446 * math.sqrt(5 / 3) / 2, rel=1e-5)
    assert "ci95" not in report.summarize([1.0, 2.0])
    assert report.summarize([]) == {"n": 0}


def test_table_marks_the_best_per_column():
    records = []
    for variant, elbo, accuracy in (("a", -10.0, 0.9), ("b", -12.0, 0.95)):
        for seed in range(3):
            records.append(
                {
                    "dataset": "d",
                    "task": "t",
                    "variant": variant,
                    "run": f"{variant}{seed}",
                    "elbo": elbo + seed,
                    "class_accuracy": accuracy,
                    "kl": 1.0,
                }
            )
    text = report.table(records)
    assert "| a | 3 | **9.00 ± 2.48** | 1.00 ± 0.00 | 0.90 ± 0.00 |" in text
    assert "| b | 3 | 11.00 ± 2.48 | 1.00 ± 0.00 | **0.95 ± 0.00** |" in text


def test_bad_results_file_is_named(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(zoo.RunDirectoryError, match="results.jsonl:2: not a JSON line"):
        report.read_results([path])


def test_every_shipped_suite_loads(book):
    names = sorted(p.stem for p in bench.SUITES_DIR.glob("*.yaml"))
    assert {"quick", "fashion_density", "mnist_density", "quadrants"} <= set(names)
    for name in names:
        suite = bench.load_suite(name, book)
        assert bench.expand(suite)
    assert any(entry["value"] == 228.70 for entry in bench.load_suite("fashion_density", book).published)


def test_run_names_repeat_no_word(book):
    for name in sorted(p.stem for p in bench.SUITES_DIR.glob("*.yaml")):
        for run in bench.expand(bench.load_suite(name, book)):
            words = re.split(r"[-_=]", run.run_id)
            assert len(words) == len(set(words)), run.run_id
    quick = [run.run_id for run in bench.expand(bench.load_suite("quick", book))]
    assert quick[:2] == ["vae_mlp-seed0", "vae_conv-seed0"]
    quadrants = [run.run_id for run in bench.expand(bench.load_suite("quadrants", book))]
    assert "quadrant_cvae-fashion_mnist-visible_quadrants=2_3-seed0" in quadrants
    task = {"name": "visible_quadrants", "visible": [1, 2], "other_option": 3}
    assert bench.task_in_run_name(task) == "visible_quadrants=1_2-other_option=3"


def test_runs_that_would_share_a_directory_are_refused(tmp_path, book):
    text = TINY + "datasets: [{name: digits, pixels: grayscale}, {name: digits, pixels: static_binarize}]\n"
    path = write_suite(tmp_path, text)
    with pytest.raises(
        zoo.RecipeError, match=f"^{re.escape(str(path))}: two runs would share the directory runs/vae_mlp-digits-seed0"
    ):
        bench.load_suite(str(path), book)


def test_a_suite_begun_under_an_earlier_run_name_resumes_that_run(tmp_path, book, registry):
    suite = bench.load_suite(
        str(write_suite(tmp_path, TINY.replace("[vae_mlp, cvae_mlp]", "[vae_mlp]").replace("[0, 1, 2]", "[0]"))), book
    )
    (run,) = bench.expand(suite)
    assert run.run_id == "vae_mlp-seed0" and "vae_mlp-recipe-recipe-seed0" in run.earlier_run_ids()
    earlier = tmp_path / "out" / "runs" / "vae_mlp-recipe-recipe-seed0"
    earlier.mkdir(parents=True)
    record = {
        "suite": "tiny",
        "run": earlier.name,
        "variant": "vae_mlp",
        "dataset": "digits",
        "task": "recipe",
        "seed": 0,
        "elbo": -30.0,
    }
    (earlier / "result.json").write_text(json.dumps(record))
    lines = []
    results = bench.run_suite(suite, tmp_path / "out", book, registry, log=lines.append)
    assert lines == ["[1/1] vae_mlp-recipe-recipe-seed0: done earlier"] and results == [record]
    assert not (tmp_path / "out" / "runs" / "vae_mlp-seed0").exists()


def test_bench_prints_the_table_once_and_writes_the_report(tmp_path, capsys):
    from zoo.cli.main import main

    path = write_suite(tmp_path, TINY.replace("[vae_mlp, cvae_mlp]", "[vae_mlp]").replace("[0, 1, 2]", "[0]"))
    assert main(["bench", str(path), "--out", str(tmp_path / "out"), "--report", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| variant | seeds |") == 1 and printed.count("| vae_mlp | 1 |") == 1
    assert (
        f"report: {tmp_path / 'report' / 'report.md'}" in printed
        and f"results: {tmp_path / 'out' / 'results.jsonl'}" in printed
    )
    assert "| vae_mlp | 1 |" in (tmp_path / "report" / "report.md").read_text()


def test_a_diverged_run_leaves_no_result_and_the_suite_goes_on(tmp_path, book, registry, monkeypatch):
    from zoo.training import experiment
    from zoo.errors import TrainingDivergedError

    suite = bench.load_suite(str(write_suite(tmp_path)), book)
    out = tmp_path / "out"
    real_train = experiment.train_and_evaluate
    second = bench.expand(suite)[1].run_id

    def diverges_on_the_second_run(recipe, workdir, *args, **kwargs):
        if workdir.name == second:
            raise TrainingDivergedError("loss became nan at step 3; no checkpoint was written yet")
        return real_train(recipe, workdir, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_and_evaluate", diverges_on_the_second_run)
    lines = []
    with pytest.raises(TrainingDivergedError, match=f"1 run\\(s\\) of suite .* diverged .*{second} \\(loss became nan"):
        bench.run_suite(suite, out, book, registry, log=lines.append)
    finished = sorted(p.parent.name for p in out.glob("runs/*/result.json"))
    assert len(finished) == 5 and second not in finished
    assert any(f"{second}: diverged, no result: loss became nan" in line for line in lines)
    assert len((out / "results.jsonl").read_text().splitlines()) == 5


def test_results_are_rebuilt_under_a_lock_so_a_second_process_drops_no_run(tmp_path, book):
    # Two `zoo bench --variants` processes share one out: a rebuild must wait for the other's and
    # then see every result, not write back what it had read before the other finished a run.
    import threading

    from zoo.files import held_exclusively

    suite = bench.load_suite(str(write_suite(tmp_path)), book)
    out = tmp_path / "out"
    first, second = bench.expand(suite)[:2]
    for run in (first, second):
        bench.run_dir(out, run).mkdir(parents=True)
    (bench.run_dir(out, first) / "result.json").write_text(json.dumps({"run": first.run_id}))
    with held_exclusively(out / bench.RESULTS_LOCK):  # the other process, in the middle of its rebuild
        rebuild = threading.Thread(target=bench.write_results, args=(suite, out))
        rebuild.start()
        rebuild.join(timeout=0.5)
        assert rebuild.is_alive(), "write_results did not wait for the lock"
        (bench.run_dir(out, second) / "result.json").write_text(json.dumps({"run": second.run_id}))
    rebuild.join(timeout=10)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["run"] for line in lines] == [first.run_id, second.run_id]


def test_a_run_another_process_holds_is_left_to_it_and_the_suite_goes_on(tmp_path, book, registry):
    # Two `zoo bench` processes sharing one out take the runs in turn; a `zoo train` in a run's
    # directory is left alone too. Neither holder makes the suite fail.
    from zoo.training import runs

    suite = bench.load_suite(str(write_suite(tmp_path)), book)
    out = tmp_path / "out"
    first, second, third = [run for run in bench.expand(suite) if run.variant == "vae_mlp"]
    lines = []
    with runs.bench_claim(bench.run_dir(out, first)) as ours, runs.trainer_lock(bench.run_dir(out, second)):
        assert ours
        results = bench.run_suite(suite, out, book, registry, log=lines.append, variants=["vae_mlp"])
    assert [r["run"] for r in results] == [third.run_id]
    assert f"[1/3] {first.run_id}: another process is running it, left to that one" in lines
    assert f"[2/3] {second.run_id}: another process is training it, left to that one" in lines
    assert lines[-1].startswith(f"2 run(s) left to other processes: {first.run_id}, {second.run_id};")
    assert not (bench.run_dir(out, first) / runs.METRICS_FILE).exists()  # nothing trained in a held run
    lines.clear()
    results = bench.run_suite(suite, out, book, registry, log=lines.append, variants=["vae_mlp"])
    assert [r["run"] for r in results] == [first.run_id, second.run_id, third.run_id]


def test_the_run_table_gives_the_logged_training_time_of_a_run_resumed_across_sessions():
    # 900 epochs at 4 s each is one hour of training from the run's own log, whatever the
    # wall time of the process that finished it (here the last 6 minutes of a resumed run).
    record = {
        "run": "vae_paper-seed0",
        "epochs": 900.0,
        "best_epoch": 850.0,
        "stopped_early": True,
        "checkpoint": "best",
        "evaluated_step": 425000,
        "seconds_per_epoch": 4.0,
        "wall_seconds": 360.0,
    }
    row = report.run_table([record]).splitlines()[-1]
    assert row == "| vae_paper-seed0 | 900.0 | 850.0 | early stopping | best (step 425000) | 4.00 | 1.00 h | 0.10 h |"


def recorded_line(suite, run, nll):
    return (
        json.dumps(
            {
                "suite": suite,
                "run": run.run_id,
                "variant": run.variant,
                "dataset": "digits",
                "task": "unconditional",
                "seed": run.seed,
                "nll": nll,
            }
        )
        + "\n"
    )


def test_runs_recorded_elsewhere_count_as_done_and_only_the_others_are_trained(tmp_path, book, registry):
    # A fresh machine has only what was committed: the recorded results.jsonl, no run directories.
    suite = bench.load_suite(str(write_suite(tmp_path)), book)
    out = tmp_path / "out"
    first, second, third = [run for run in bench.expand(suite) if run.variant == "vae_mlp"]
    recorded = tmp_path / "committed.jsonl"
    recorded.write_text(recorded_line("tiny", first, 100.0) + recorded_line("tiny", third, 102.0))
    assert bench.adopt_recorded_results(suite, out, recorded) == 2
    assert bench.adopt_recorded_results(suite, out, recorded) == 0  # a result already there is kept
    lines = []
    results = bench.run_suite(suite, out, book, registry, log=lines.append, variants=["vae_mlp"])
    assert [r["run"] for r in results] == [first.run_id, second.run_id, third.run_id]
    assert [r["nll"] for r in results if r["run"] != second.run_id] == [100.0, 102.0]
    assert f"[1/3] {first.run_id}: done earlier" in lines and f"[3/3] {third.run_id}: done earlier" in lines
    assert any(line.startswith(f"[2/3] {second.run_id}: training") for line in lines)
    # The report draws its figures from the first seed whose run is here (seed 1), not the adopted seed 0.
    text = report.write_report([out / "results.jsonl"], tmp_path / "report", registry).read_text()
    assert "### vae_mlp (digits, unconditional, seed 1)" in text and f"figures/{second.run_id}/" in text
    assert f"figures/{first.run_id}/" not in text


def test_a_recorded_result_of_another_suite_is_refused_and_a_dropped_run_left_out(tmp_path, book):
    suite = bench.load_suite(str(write_suite(tmp_path)), book)
    run = bench.expand(suite)[0]
    recorded = tmp_path / "committed.jsonl"
    recorded.write_text(recorded_line("quick", run, 1.0))
    with pytest.raises(zoo.RecipeError, match=r"committed.jsonl: record 1 is a result of suite 'quick', not of 'tiny'"):
        bench.adopt_recorded_results(suite, tmp_path / "out", recorded)
    gone = bench.Run("vae_conv", run.dataset, run.task, 0)
    recorded.write_text(recorded_line("tiny", gone, 1.0))
    lines = []
    assert bench.adopt_recorded_results(suite, tmp_path / "out", recorded, log=lines.append) == 0
    assert lines == [f"{recorded}: record 1 ({gone.run_id}) is not a run of tiny now; left out"]
    with pytest.raises(zoo.RecipeError, match="missing.jsonl: no such results file"):
        bench.adopt_recorded_results(suite, tmp_path / "out", tmp_path / "missing.jsonl")
    recorded.write_text('{"step": 10, "loss": 1.0}\n')  # a training log, not results
    with pytest.raises(zoo.RecipeError, match="record 1 has no suite and run"):
        bench.adopt_recorded_results(suite, tmp_path / "out", recorded)
