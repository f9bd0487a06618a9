"""The KL warm-up as training applies it (issue 32): a short run with a warm-up logs, at every
step, the weight that Bowman et al.'s linear schedule gives and a loss that weights the KL
term by it, for every objective that takes a warm-up and for a warm-up in steps and in epochs.

The weight is computed here from its definition, min(t / N, 1) at the t-th step (counted
from 0), N the warm-up in steps (ceil(epochs x steps per epoch) for one in epochs). A record
of metrics.jsonl at step s describes the step counted s - 1 from 0 (it is written after the
update); with `log_every=1` each record is one step, so the loss is checked exactly. The
scanned loop (blocks of steps in one call) gets the step from its own counter: a record of a
block logs the mean weight of its steps.
"""

import math

import numpy as np
import pytest

from zoo.training import runs
from zoo.core.assembly import assemble
from zoo.training.experiment import train_and_evaluate

STEPS = 40
WARMUP_STEPS = 30
WARMUP_EPOCHS = 1.5
BATCH_SIZE = 64
SMALL = [
    "encoder.hidden=[16]",
    "decoder.hidden=[16]",
    "latent_dim=2",
    f"train.steps={STEPS}",
    f"train.batch_size={BATCH_SIZE}",
    "train.log_every=1",
    f"train.checkpoint_every={STEPS}",
    "train.tensorboard=false",
    "train.loop=step",  # one step per call, whatever the timings; the scanned loop has its own test
]
BETA, ALPHA, IMPORTANCE_SAMPLES = 3.0, 0.3, 4


def warmup_weight(step_index: int, warmup_steps: int) -> float:
    """The KL weight of a linear warm-up over `warmup_steps` steps at step `step_index` (from 0)."""
    return min(step_index / warmup_steps, 1.0)


def elbo_loss(record, weight, beta=1.0):
    """-log p(x | z) + beta w KL."""
    return -record["log_likelihood"] + beta * weight * record["kl"]


def hybrid_loss(record, weight):
    """-(alpha (log p(x | z) - w KL) + (1 - alpha) log p_GSNN(x)), log p(x | z) = ELBO + KL."""
    warmed_elbo = record["elbo"] + record["kl"] - weight * record["kl"]
    return -(ALPHA * warmed_elbo + (1.0 - ALPHA) * record["gsnn_log_likelihood"])


# variant, recipe overrides, the loss against the logged metrics and the weight (None: the IWAE
# bound, whose warmed loss the metrics do not determine; see `check_iwae_losses`), whether it logs the weight.
OBJECTIVES = {
    "elbo": ("vae_mlp", [], elbo_loss, True),
    "beta_elbo": ("beta_vae_mlp", [f"objective.beta={BETA}"], lambda r, w: elbo_loss(r, w, BETA), True),
    "hybrid": ("cvae_sohn", [f"objective.alpha={ALPHA}", "prior.hidden=[8]"], hybrid_loss, False),
    "iwae": ("iwae_mlp", [f"objective.num_samples={IMPORTANCE_SAMPLES}"], None, True),
}
UNITS = {"steps": f"objective.kl_warmup_steps={WARMUP_STEPS}", "epochs": f"objective.kl_warmup_epochs={WARMUP_EPOCHS}"}


def train_with_warmup(book, registry, tmp_path, objective: str, unit: str, *extra: str):
    """(the training records, the warm-up in steps) of a short run with a KL warm-up."""
    variant, overrides, _, _ = OBJECTIVES[objective]
    recipe = book.resolve(variant, registry, [*SMALL, *overrides, UNITS[unit], *extra])
    warmup_steps = WARMUP_STEPS
    if unit == "epochs":  # the steps of one pass over the training split, the remainder dropped
        steps_per_epoch = len(assemble(recipe, registry).dataset.train.images) // BATCH_SIZE
        warmup_steps = math.ceil(WARMUP_EPOCHS * steps_per_epoch)
        assert 5 < warmup_steps < STEPS - 5, "the run must see the warm-up and some steps after it"
    train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)
    records = [r for r in runs.read_metrics(tmp_path / "run") if r["split"] == "train"]
    return records, warmup_steps


def check_iwae_losses(records, weights):
    """The warmed IWAE loss -mean log (1/K) sum_k p(x | z_k) (p(z_k) / q(z_k | x))^w is the bound
    itself once w = 1, and another number while w < 1 (the KL part is weighted inside the log)."""
    for record, weight in zip(records, weights):
        if weight == 1.0:
            assert record["loss"] == pytest.approx(-record["iwae_bound"], rel=1e-5, abs=1e-4), record
    warming = [abs(r["loss"] + r["iwae_bound"]) for r, w in zip(records, weights) if w < 0.5]
    assert min(warming) > 1e-2, f"the loss is the unweighted bound during the warm-up: {warming}"


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_training_logs_the_warmup_weight_and_weights_the_loss_by_it(book, registry, tmp_path, objective, unit):
    records, warmup_steps = train_with_warmup(book, registry, tmp_path, objective, unit)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1)), "one record per step"
    weights = [warmup_weight(r["step"] - 1, warmup_steps) for r in records]
    _, _, loss_formula, logs_weight = OBJECTIVES[objective]
    if logs_weight:
        logged = np.array([r["kl_weight"] for r in records])
        np.testing.assert_allclose(logged, weights, atol=1e-6, err_msg="the logged KL weight is not the warm-up's")
    if loss_formula is None:
        check_iwae_losses(records, weights)
        return
    expected = np.array([loss_formula(r, w) for r, w in zip(records, weights)])
    losses = np.array([r["loss"] for r in records])
    # 1e-3 nats: float32 rounding of terms of tens of nats; one step's change of weight moves the loss
    # by KL / N, a hundredth of a nat or more here.
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-3, err_msg="the loss is not the warmed objective")


def test_the_scanned_loop_logs_the_mean_warmup_weight_of_its_steps(book, registry, tmp_path):
    block = 10  # zoo.training.inputs.SCAN_BLOCK steps a call: one record per call
    records, warmup_steps = train_with_warmup(
        book, registry, tmp_path, "elbo", "steps", "train.loop=scan", f"train.log_every={block}"
    )
    assert [r["step"] for r in records] == list(range(block, STEPS + 1, block))
    # Steps 0-9, 10-19, 20-29 and 30-39 of a 30-step warm-up: 0.15, 0.48, 0.82 and 1.
    expected = [
        np.mean([warmup_weight(t, warmup_steps) for t in range(end - block, end)])
        for end in range(block, STEPS + 1, block)
    ]
    np.testing.assert_allclose([r["kl_weight"] for r in records], expected, atol=1e-6)
