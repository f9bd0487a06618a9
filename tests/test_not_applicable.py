"""A metric that does not apply to a model is reported as such, never as a number: the model's
components or its objective declare it with a reason (`undefined_metrics`), evaluation writes
null and the reason (METRIC_undefined) to eval.json and results.jsonl, and `zoo compare` prints
"n/a" with the reason as a footnote. The deterministic baseline and the GSNN (objective gsnn,
which never trains the encoder) have no ELBO, KL, reconstruction, active units or posterior-
proposal log-likelihood; their prior-proposal log-likelihood is a number."""

from __future__ import annotations

import json
import re
import textwrap

import jax
import pytest

import zoo
from tests.conftest import first_party_registry, plugin_of
from zoo.evaluation import bench, report
from zoo.core import objectives
from zoo.evaluation.evaluate import evaluate
from zoo.core.interfaces import Split

SMALL = ["encoder.hidden=[16]", "decoder.hidden=[16]", "prior.hidden=[16]", "latent_dim=2", "dataset={name: digits}"]
THROUGH_THE_ENCODER = ("elbo", "kl", "reconstruction_error", "active_units", "conditional_log_likelihood")


def small_experiment(book, registry, variant, *overrides):
    from zoo.core.assembly import assemble

    return assemble(book.resolve(variant, registry, [*SMALL, *overrides]), registry)


def evaluated(experiment, objective):
    from flax import nnx

    graphdef, params = nnx.split(experiment.model)
    test = experiment.dataset.test
    return evaluate(
        graphdef,
        params,
        experiment.condition,
        Split(test.images[:20], test.labels[:20]),
        jax.random.key(0),
        num_samples=4,
        conditional=experiment.model.conditional,
        proposals=("posterior", "prior"),
        objective=objective,
    )


@pytest.mark.parametrize("variant", ["quadrant_baseline", "quadrant_gsnn"])
def test_a_gsnn_objective_declares_the_metrics_through_the_encoder_not_applicable(book, registry, variant):
    experiment = small_experiment(book, registry, variant)
    metrics = evaluated(experiment, experiment.objective)
    for key in THROUGH_THE_ENCODER:
        assert metrics[key] is None, key
        assert "never trains the encoder" in metrics[f"{key}_undefined"]
    assert isinstance(metrics["conditional_log_likelihood_prior"], float)
    assert "conditional_log_likelihood_prior_undefined" not in metrics
    # Without the objective (a caller that does not know it), the numbers are there, as before.
    plain = evaluated(experiment, None)
    assert all(isinstance(plain[key], (int, float)) for key in THROUGH_THE_ENCODER)


def test_the_same_model_trained_with_the_hybrid_objective_has_every_metric(book, registry):
    experiment = small_experiment(book, registry, "quadrant_hybrid")
    metrics = evaluated(experiment, experiment.objective)
    assert all(isinstance(metrics[key], (int, float)) for key in THROUGH_THE_ENCODER)
    assert not [key for key in metrics if key.endswith("_undefined")]


def test_a_declaration_naming_an_unknown_metric_is_refused_at_build(book):
    def misnamed():
        loss_fn = objectives.gsnn()
        loss_fn.undefined_metrics = {"elbow": "a typo"}
        return loss_fn

    registry = first_party_registry(plugin_of("misnamed", ("objective", "misnamed", misnamed)))
    with pytest.raises(zoo.ModelBuildError, match="declares an unknown metric 'elbow' undefined; metrics: elbo, kl"):
        small_experiment(book, registry, "quadrant_gsnn", "objective={name: misnamed}")


def test_compare_prints_na_with_a_footnote_never_a_number():
    reason = "the gsnn objective never trains the encoder q(z | x, c)"
    records = [
        {
            "dataset": "d",
            "task": "t",
            "variant": "quadrant_baseline",
            "run": f"b{seed}",
            "elbo": None,
            "elbo_undefined": reason,
            "kl": None,
            "kl_undefined": reason,
            "conditional_log_likelihood_prior": -195.3 - seed,
        }
        for seed in range(3)
    ]
    records += [
        {
            "dataset": "d",
            "task": "t",
            "variant": "quadrant_cvae",
            "run": f"c{seed}",
            "elbo": -178.0 - seed,
            "kl": 4.8,
            "conditional_log_likelihood_prior": -177.0,
        }
        for seed in range(3)
    ]
    text = report.table(records)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| quadrant")}
    cells = [cell.strip() for cell in rows["quadrant_baseline"].split("|")[3:-1]]
    assert cells == ["n/a¹", "196.30 ± 2.48", "n/a¹"]  # -ELBO, cond. NLL (prior MC), KL
    assert "| 179.00 ± 2.48 |" in rows["quadrant_cvae"]  # the only -ELBO that applies: no n/a competes for best
    assert text.count(reason) == 1 and f"¹ n/a: {reason}." in text
    assert "21971160" not in text and "not defined" not in text


def test_a_suite_carries_not_applicable_through_results_eval_and_compare(tmp_path, book, registry, capsys):
    from zoo.cli.main import main

    suite_file = tmp_path / "baseline.yaml"
    suite_file.write_text(
        textwrap.dedent(f"""
        name: baseline
        variants: [quadrant_baseline, quadrant_cvae]
        seeds: [0]
        budget: {{steps: 6}}
        set: {json.dumps([*SMALL, "train.log_every=3"])}
        eval: {{num_samples: 4, limit: 20, proposals: [posterior, prior]}}
    """)
    )
    suite = bench.load_suite(str(suite_file), book)
    out = tmp_path / "out"
    bench.run_suite(suite, out, book, registry, log=lambda _: None)
    baseline, cvae = report.read_results([out / "results.jsonl"])
    for key in THROUGH_THE_ENCODER:
        assert baseline[key] is None and "never trains the encoder" in baseline[f"{key}_undefined"]
        assert isinstance(cvae[key], (int, float)) and f"{key}_undefined" not in cvae
    assert isinstance(baseline["conditional_log_likelihood_prior"], float)

    assert main(["eval", str(out / "runs" / baseline["run"]), "-k", "4", "--limit", "20", "--prior-proposal"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["elbo"] is None and "never trains the encoder" in evaluation["elbo_undefined"]
    assert isinstance(evaluation["conditional_log_likelihood_prior"], float)

    assert main(["compare", str(out / "results.jsonl"), "--report", str(tmp_path / "report"), "--no-samples"]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| quadrant_baseline"))
    assert row.count("n/a¹") == 5  # -ELBO, cond. NLL (IS), recon. error, KL, active units
    assert not re.search(r"\| -?\d", row.split("|", 3)[3].split("n/a¹")[0])  # no number before the first n/a
    assert "¹ n/a: the gsnn objective never trains the encoder" in printed
    written = (tmp_path / "report" / "report.md").read_text()
    assert "¹ n/a: the gsnn objective never trains the encoder" in written
    assert "Not drawn: quadrant_baseline, whose ELBO does not apply" in written
