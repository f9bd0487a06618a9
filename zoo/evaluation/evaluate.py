"""Evaluation, separate from the objective: ELBO, importance-sampled log-likelihood,
reconstruction error, KL and active units over a whole split."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import numpy as np
from flax import nnx

from zoo.core.interfaces import Split, data_kind, undefined_metrics
from zoo.evaluation.bits import with_bits_per_dim
from zoo.core.model import LOG_LIKELIHOOD_METRIC
from zoo.errors import DataError
from zoo.progress import Progress
from zoo.training import parallel
from zoo.training.programs import kept_program
from zoo.training.validation import make_bound_metrics, over_batches

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015: Cov_x(E_q[z]) above 0.01


def perplexity(counts: np.ndarray) -> float:
    """exp(entropy) of the empirical code distribution: K when K codes are used equally, 1 for one code."""
    probabilities = np.asarray(counts, np.float64) / np.sum(counts)
    used = probabilities[probabilities > 0]
    return float(np.exp(-np.sum(used * np.log(used))))


def make_importance_sampled(
    graphdef: nnx.GraphDef, condition, num_samples: int, chunk_size: Optional[int] = None, proposal: str = "posterior"
) -> Callable:
    """A jitted `(params, images, labels, rng) -> log p(x | c)` estimate per example, kept per
    model structure and settings (zoo.training.programs)."""
    key = ("importance_sampled", graphdef, condition, num_samples, chunk_size, proposal)
    return kept_program(key, lambda: importance_sampled_program(graphdef, condition, num_samples, chunk_size, proposal))


def importance_sampled_program(
    graphdef: nnx.GraphDef, condition, num_samples: int, chunk_size: Optional[int], proposal: str
) -> Callable:
    """The program of `make_importance_sampled`, built anew."""

    @jax.jit
    def importance_sampled(params, images, labels, rng):
        model = nnx.merge(graphdef, params)
        x, c = condition.split(images, labels)
        return model.log_likelihood(x, c, rng, num_samples=num_samples, chunk_size=chunk_size, proposal=proposal)

    return importance_sampled


def active_units(posterior_means: np.ndarray) -> int:
    """Latent dimensions whose posterior mean varies over the data by more than 0.01.

    The means are taken relative to the prior mean: for a conditional prior
    p(z | c) a unit that only follows c carries no information about x.
    """
    return int(np.sum(np.var(posterior_means, axis=0) > ACTIVE_UNIT_THRESHOLD))


def evaluate(
    graphdef: nnx.GraphDef,
    params: Any,
    condition,
    split: Split,
    rng: jax.Array,
    *,
    num_samples: int = 5000,
    batch_size: int = 100,
    chunk_size: Optional[int] = None,
    conditional: bool = False,
    proposals: tuple[str, ...] = ("posterior",),
    mesh: Optional[parallel.Mesh] = None,
    progress: bool = False,
    objective: Any = None,
    disentanglement: Optional[int] = None,
    dci_model: str = "gbt",
) -> dict[str, Any]:
    """Every metric on one split; `num_samples` = 0 skips the importance-sampled estimate.

    With `disentanglement` = N, the posterior means of the split's first N examples are scored
    against its ground-truth factors (zoo.evaluation.disentanglement.METRICS: `mig`, `dci_disentanglement`,
    `dci_completeness`, `dci_informativeness`); the split must have factors.

    A metric that does not apply, as the model's components or the `objective` it was
    trained with declare (`undefined_metrics`), is None, with the reason under
    `METRIC_undefined` (e.g. `log_likelihood_undefined` for a VQ-VAE's point-mass
    posterior; `elbo_undefined` and the rest for a gsnn, whose encoder is never trained);
    a discrete latent adds `codebook_perplexity` (exp of the entropy of the split's code usage)
    and `codebook_usage` (the share of the codebook's codes that the split uses at all).

    Each proposal gives one estimate: `log_likelihood` (or
    `conditional_log_likelihood`) with q(z|x,c), `..._prior` with p(z|c).
    With `progress`, each pass over the split shows its progress and time left.
    """
    bound_rng, is_rng = jax.random.split(rng)
    if mesh is not None:
        params = parallel.replicate(params, mesh)
    with Progress(len(split.images), "ELBO, KL, reconstruction", unit="examples", enabled=progress) as bar:
        bounds = over_batches(make_bound_metrics(graphdef, condition), params, split, bound_rng, batch_size, mesh, bar)
    metrics: dict[str, Any] = {
        "num_examples": int(len(split.images)),
        "elbo": float(np.mean(bounds["elbo"])),
        "elbo_samples_per_example": 1,  # one z per example: the mean over the split is what is stable
        "kl": float(np.mean(bounds["kl"])),
        "reconstruction_error": float(np.mean(bounds["reconstruction_error"])),
        "active_units": active_units(bounds["posterior_mean"]),
    }
    if "code_counts" in bounds:
        counts = np.sum(bounds["code_counts"], axis=0)
        metrics["codebook_perplexity"] = perplexity(counts)
        metrics["codebook_usage"] = float(np.mean(counts > 0))  # the share of the codes the split uses
    if disentanglement is not None:
        metrics.update(disentanglement_of(bounds["posterior_mean"], split, disentanglement, dci_model))
    model = nnx.merge(graphdef, params)
    undefined = {**undefined_metrics(objective), **model.undefined_metrics}
    for proposal in proposals if num_samples > 0 else ():
        metric = LOG_LIKELIHOOD_METRIC[proposal]
        if metric in undefined:
            metrics[metric] = None  # its name below; not estimated at all
            continue
        log_likelihood = importance_sampled_over(
            graphdef,
            params,
            condition,
            split,
            is_rng,
            num_samples=num_samples,
            batch_size=batch_size,
            chunk_size=chunk_size,
            proposal=proposal,
            mesh=mesh,
            progress=progress,
        )
        metrics[metric] = float(np.mean(log_likelihood))
        metrics["num_importance_samples"] = int(num_samples)
    return mark_undefined(metrics, undefined, conditional)


def disentanglement_of(
    posterior_means: np.ndarray, split: Split, examples: int, dci_model: str = "gbt"
) -> dict[str, Any]:
    """The disentanglement metrics of the first `examples` posterior means against the split's factors."""
    from zoo.evaluation.disentanglement import disentanglement_scores

    if split.factors is None:
        raise DataError("disentanglement metrics need a split with ground-truth factors; this one has none")
    codes = posterior_means.reshape((len(posterior_means), -1))[:examples]
    return disentanglement_scores(codes, split.factors[:examples], dci_model=dci_model)


def mark_undefined(metrics: dict[str, Any], undefined: dict[str, str], conditional: bool) -> dict[str, Any]:
    """`metrics` with each metric that does not apply as None and its reason under `METRIC_undefined`,
    the log-likelihoods renamed `conditional_...` for a conditional model."""
    marked: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"conditional_{key}" if conditional and key in LOG_LIKELIHOOD_METRIC.values() else key
        if key in undefined:  # reported as not applicable, never as a number
            marked[name], marked[f"{name}_undefined"] = None, undefined[key]
        else:
            marked[name] = value
    return marked


def importance_sampled_over(
    graphdef: nnx.GraphDef,
    params: Any,
    condition,
    split: Split,
    rng: jax.Array,
    *,
    num_samples: int,
    batch_size: int = 100,
    chunk_size: Optional[int] = None,
    proposal: str = "posterior",
    mesh: Optional[parallel.Mesh] = None,
    progress: bool = False,
) -> np.ndarray:
    """The importance-sampled log p(x | c) of every example of a split (K = `num_samples`)."""
    estimate = make_importance_sampled(graphdef, condition, num_samples, chunk_size, proposal)
    description = f"log-likelihood, K = {num_samples}" + (" (prior proposal)" if proposal == "prior" else "")
    with Progress(len(split.images), description, unit="examples", enabled=progress) as bar:
        return over_batches(estimate, params, split, rng, batch_size, mesh, bar)


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """How a run is evaluated: `zoo eval`'s options, a suite's `evaluation:` section and
    `Run.evaluate`'s arguments are all this."""

    split: str = "test"
    num_samples: int = 5000
    """Importance samples K per example (0 skips the estimate); 5000 is the published protocol."""
    batch_size: int = 100
    limit: Optional[int] = None
    """Only the first `limit` examples of the split."""
    seed: int = 0
    proposals: tuple[str, ...] = ("posterior",)
    """"posterior" q(z|x,c) and/or "prior" p(z|c) (for GSNNs)."""
    disentanglement: bool = False
    """Also MIG and DCI of the posterior means against the dataset's ground-truth factors (a
    dataset without factors is refused)."""
    disentanglement_examples: int = 10000
    """At most this many examples (the split's first) for the disentanglement metrics."""
    dci_model: str = "gbt"
    """DCI's classifiers: "gbt" (gradient-boosted trees, as disentanglement_lib) or "forest"."""


def evaluate_run(
    experiment,
    graphdef: nnx.GraphDef,
    params: Any,
    settings: EvaluationSettings,
    *,
    devices: Optional[int] = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Every metric of a trained model on the split `settings` name (`evaluate` on it)."""
    from zoo.core.data import evaluation_split
    from zoo.evaluation.disentanglement import require_factors

    if settings.disentanglement:  # before any work
        require_factors(experiment.dataset, "disentanglement")
    split = evaluation_split(experiment.dataset, settings.split, seed=settings.seed)
    if settings.limit:
        split = split.take(slice(settings.limit))
    if settings.disentanglement:
        require_examples(min(len(split.images), settings.disentanglement_examples), settings)
    mesh = parallel.mesh_for(devices, "--devices")  # a short batch is padded to the mesh (over_batches)
    metrics = evaluate(
        graphdef,
        params,
        experiment.condition,
        split,
        jax.random.key(settings.seed),
        num_samples=settings.num_samples,
        batch_size=settings.batch_size,
        conditional=experiment.model.conditional,
        proposals=settings.proposals,
        mesh=mesh,
        progress=progress,
        objective=experiment.objective,
        disentanglement=settings.disentanglement_examples if settings.disentanglement else None,
        dci_model=settings.dci_model,
    )
    model = experiment.model
    dims = int(np.prod(model.x_shape))
    return with_bits_per_dim(metrics, experiment.dataset.pixel_levels, dims, data_kind(model.likelihood))


def require_examples(available: int, settings: EvaluationSettings) -> None:
    """Refuse, before any work, a split too small for the disentanglement metrics' groups."""
    from zoo.evaluation.disentanglement import GROUP_SIZE

    if available < GROUP_SIZE:
        raise DataError(
            f"disentanglement: the metrics need at least {GROUP_SIZE} examples (the beta-VAE and FactorVAE "
            f"scores draw groups of {GROUP_SIZE}); the {settings.split} split gives {available} "
            f"(limit {settings.limit}, disentanglement examples {settings.disentanglement_examples})"
        )
