"""A trained run as one object: its recipe, model, metrics and a checkpoint's parameters,
with what a notebook or the `zoo` command does with it (sample, encode, decode,
reconstruct, log-likelihood, evaluate).

Images in and out are numpy `(N, H, W, C)` float32 in [0, 1]; labels `(N,)`
class indices. Every method works on the CPU or the accelerator JAX chose.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.training import checkpoints, runs
from zoo.errors import RunDirectoryError, ZooError, overrides_named
from zoo.core.data import evaluation_split
from zoo.evaluation.evaluate import EvaluationSettings
from zoo.core.assembly import Experiment, assemble
from zoo.training.experiment import checkpoint_used
from zoo.training.step import initial_state
from zoo.core.interfaces import Split
from zoo.core.recipes import train_config
from zoo.core.registry import Registry

CHECKPOINTS = ("best", "newest")
Condition = Union[str, Sequence[Union[int, str]]]


def fit_after_training(graphdef: nnx.GraphDef, params: Any, experiment: Experiment) -> Any:
    """`params`, with the prior fitted to the training split where it is a prior fitted after
    training (a method `fit_after_training(model, x, c)`, e.g. the VQ-VAE's `fitted_codebook`);
    unchanged otherwise. The fit is deterministic, so every loader of the run gets the same prior."""
    if not hasattr(experiment.model.prior, "fit_after_training"):
        return params
    if not len(experiment.dataset.train.images):
        raise ZooError(
            f"prior: {experiment.recipe['prior']['name']!r} is a sampler fitted to the training split after "
            f"training, and dataset {experiment.dataset.name!r} has no training split to fit it to"
        )
    model = nnx.merge(graphdef, params)
    train = evaluation_split(experiment.dataset, "train")
    model.prior.fit_after_training(
        model, *experiment.condition.split(jnp.asarray(train.images), jnp.asarray(train.labels))
    )
    return nnx.state(model)


@dataclasses.dataclass
class Run:
    """A trained run directory, loaded at one checkpoint (`Run.load` or `zoo.load`)."""

    workdir: Path
    experiment: Experiment
    graphdef: nnx.GraphDef
    params: Any
    step: int
    """The training step of the loaded checkpoint."""
    checkpoint: str
    """Which checkpoint was asked for: "best" (by the validation metric) or "newest"."""
    data_dir: Optional[str] = None
    summary: Optional[dict[str, Any]] = None
    """What training returned, for a run `zoo.train` has just trained."""
    registry: Optional[Registry] = None
    """The registry it was loaded with (samplers are looked up in it)."""
    sampler: Optional[str] = None
    """The sampler fitted after training that is its prior (`with_sampler`), or None for its own."""

    @classmethod
    def load(
        cls, workdir: Union[str, Path], registry: Registry, data_dir: Optional[str] = None, checkpoint: str = "best"
    ) -> "Run":
        """The run in `workdir` at its best checkpoint (the newest when it kept none, e.g. it had
        no validation split) or at its newest one."""
        workdir = Path(workdir)
        if checkpoint not in CHECKPOINTS:
            raise ZooError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
        recipe = runs.resolved_recipe(workdir, registry)
        experiment = assemble(recipe, registry, data_dir, check_values=False)  # its parameters come from the checkpoint
        graphdef, _, state = initial_state(experiment.model, train_config(recipe), experiment.objective)
        best = checkpoints.restore_best(workdir, state, note=runs.tell) if checkpoint == "best" else None
        if best is not None:
            step, state = best
        else:
            restored = checkpoints.restore_latest(checkpoints.checkpoint_manager(workdir), state, note=runs.tell)
            if restored is None:
                raise RunDirectoryError(
                    f"{workdir} holds no checkpoint yet; train it first (`zoo train ... --workdir {workdir}`)"
                )
            step, state, _ = restored
        params = fit_after_training(graphdef, state.params, experiment)
        return cls(workdir, experiment, graphdef, params, step, checkpoint, data_dir, registry=registry)

    def with_sampler(self, name: str, options: Optional[Mapping[str, Any]] = None) -> "Run":
        """This run with the sampler `name` (a prior fitted after training: gmm_fitted, maf_fitted,
        two_stage, pixelcnn_codes, ...) in place of its prior, built with `options`, fitted to the
        codes of the training split on first use and read from RUN/samplers/ after that
        (zoo.evaluation.samplers). Refused, naming the sampler and the run, where the run's latent
        does not suit it or its dataset has no training split."""
        from zoo.core.plugin_manager import default_registry
        from zoo.evaluation.samplers import sampler_spec, with_fitted_sampler

        registry = self.registry if self.registry is not None else default_registry()
        with overrides_named("sampler_options="):
            spec = sampler_spec(name, options, registry)
        model, _ = with_fitted_sampler(self, spec, registry)
        graphdef, params = nnx.split(model)
        return dataclasses.replace(self, graphdef=graphdef, params=params, sampler=name)

    # What the run is.
    @property
    def recipe(self) -> dict[str, Any]:
        """The resolved recipe the run was trained with."""
        return dict(self.experiment.recipe)

    @property
    def variant(self) -> str:
        return str(self.experiment.recipe.get("variant", self.workdir.name))

    @property
    def model(self):
        """The model with the loaded parameters (a flax NNX module)."""
        return nnx.merge(self.graphdef, self.params)

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """Every line of the run's metrics.jsonl (training and validation)."""
        return runs.read_metrics(self.workdir)

    @property
    def evaluations(self) -> dict[str, Any]:
        """eval.json: every evaluation so far, by split and number of importance samples."""
        return runs.read_evaluations(self.workdir)

    @property
    def checkpoint_used(self) -> str:
        """ "best" when the loaded step is the run's best checkpoint, else "newest"."""
        return checkpoint_used(self.workdir, self.step)

    # Generating.
    def sample(
        self,
        num_samples: Optional[int] = None,
        *,
        condition: Optional[Condition] = None,
        seed: int = 0,
        temperature: float = 1.0,
        sampler: Optional[str] = None,
        sampler_options: Optional[Mapping[str, Any]] = None,
    ) -> np.ndarray:
        """Likelihood means at z drawn from the prior: `(N, H, W, C)`.

        Unconditional: `num_samples` images (default 16). Class-conditional:
        `condition` lists classes (indices or names, or text as typed: '2026'),
        and each gets `num_samples` images (default 1), in the order given.
        `sampler`: draw z from that sampler fitted after training instead (`with_sampler`).
        """
        if sampler is not None:
            return self.with_sampler(sampler, sampler_options).sample(
                num_samples, condition=condition, seed=seed, temperature=temperature
            )
        model = self.model
        key = jax.random.key(seed)
        if condition is None:
            if model.conditional:
                raise ZooError(
                    f"{self.variant} is conditional: pass condition=, e.g. condition=[2, 0, 2, 6] "
                    f"(classes: {', '.join(self.experiment.dataset.class_names) or 'see the dataset'})"
                )
            return np.asarray(model.sample(key, None, num_samples=num_samples or 16, temperature=temperature))
        if not model.conditional:
            raise ZooError(f"{self.variant} is unconditional: it takes no condition")
        text = condition if isinstance(condition, str) else " ".join(str(c) for c in condition)
        c, _ = self.experiment.condition.parse(text, self.experiment.dataset)
        c = jnp.repeat(jnp.asarray(c), num_samples or 1, axis=0)
        x = model.sample(key, c, temperature=temperature)
        return np.asarray(self.experiment.condition.assemble(x, c))

    def sample_grid(
        self, *, condition_text: Optional[str] = None, per_row: int = 8, temperature: float = 1.0, seed: int = 0
    ) -> tuple[np.ndarray, list[str], int]:
        """(images, row labels, rows) for a grid: a row per class (or per condition typed) of a
        conditional model, `per_row` x `per_row` samples of an unconditional one."""
        from zoo.core.sampling import sample_images

        return sample_images(
            self.experiment,
            self.graphdef,
            self.params,
            jax.random.key(seed),
            condition_text=condition_text,
            per_row=per_row,
            temperature=temperature,
        )

    # Encoding and decoding.
    def _x_and_c(self, images: Any, labels: Any = None) -> tuple[jax.Array, Optional[jax.Array]]:
        """The model's x and c for images (and labels, which a class-conditional model needs)."""
        images = np.asarray(images, np.float32)
        shape = tuple(self.experiment.dataset.image_shape)
        if images.shape[1:] != shape:
            raise ZooError(f"images must be (N, {', '.join(map(str, shape))}), got {images.shape}")
        if labels is None:
            if getattr(self.experiment.condition, "class_conditional", False):
                raise ZooError(f"{self.variant} is class-conditional: pass labels= (one class index per image)")
            labels = np.zeros(len(images), np.int32)
        labels = np.asarray(labels, np.int32)
        if labels.shape != (len(images),):
            raise ZooError(f"labels must be ({len(images)},), one class index per image; got {labels.shape}")
        x, c = self.experiment.condition.split(jnp.asarray(images), jnp.asarray(labels))
        return x, (c if self.experiment.model.conditional else None)  # the flag, without merging the parameters in

    def encode(self, images: Any, labels: Any = None) -> np.ndarray:
        """The posterior mean E[z | x, c] of each image: `(N, *latent)`."""
        x, c = self._x_and_c(images, labels)
        return np.asarray(self.model.encode(x, c).mean())

    def decode(self, z: Any, labels: Any = None, images: Any = None) -> np.ndarray:
        """Images (likelihood means) decoded from latents `z` (`(N, *latent)`); a conditional model
        takes its condition from `labels` (class-conditional) or `images` (e.g. visible quadrants)."""
        z = jnp.asarray(z, jnp.float32)
        if images is None:
            images = np.zeros((len(z), *self.experiment.dataset.image_shape), np.float32)
        x, c = self._x_and_c(images, labels)
        return np.asarray(self.experiment.condition.assemble(self.model.decode(z, c).mean(), c))

    def reconstruct(self, images: Any, labels: Any = None) -> np.ndarray:
        """Each image decoded from its posterior mean."""
        x, c = self._x_and_c(images, labels)
        return np.asarray(self.experiment.condition.assemble(self.model.reconstruct(x, c), c))

    # Numbers.
    def log_likelihood(
        self,
        images: Any,
        labels: Any = None,
        *,
        num_samples: int = 5000,
        seed: int = 0,
        batch_size: int = 100,
        progress: bool = False,
    ) -> np.ndarray:
        """Importance-sampled log p(x | c) per image (nats), `num_samples` samples each, chunked in K
        and batched as `zoo eval` does."""
        from zoo.evaluation.evaluate import importance_sampled_over

        images = np.asarray(images, np.float32)
        labels = np.zeros(len(images), np.int32) if labels is None else np.asarray(labels, np.int32)
        self._x_and_c(images[:1], labels[:1])  # shapes checked before anything is compiled
        split = Split(images, labels)
        return importance_sampled_over(
            self.graphdef,
            self.params,
            self.experiment.condition,
            split,
            jax.random.key(seed),
            num_samples=num_samples,
            batch_size=batch_size,
            progress=progress,
        )

    def evaluate(
        self,
        split: str = "test",
        num_samples: int = 5000,
        *,
        batch_size: int = 100,
        limit: Optional[int] = None,
        seed: int = 0,
        proposals: Sequence[str] = ("posterior",),
        devices: Optional[int] = None,
        record: bool = True,
        progress: bool = False,
        disentanglement: bool = False,
        disentanglement_examples: int = 10000,
        dci_model: str = "gbt",
    ) -> dict[str, Any]:
        """Every metric on one split, the dict `zoo eval` prints; with `record`, also added to
        the run's eval.json (keyed by split and K). With `disentanglement`, also the
        disentanglement metrics (MIG, DCI with `dci_model`'s classifiers, the beta-VAE and FactorVAE
        scores, SAP, modularity) of
        the posterior means of at most `disentanglement_examples` examples against the
        dataset's ground-truth factors (a dataset without them is refused)."""
        from zoo.evaluation.evaluate import evaluate_run

        settings = EvaluationSettings(
            split=split,
            num_samples=num_samples,
            batch_size=batch_size,
            limit=limit,
            seed=seed,
            proposals=tuple(proposals),
            disentanglement=disentanglement,
            disentanglement_examples=disentanglement_examples,
            dci_model=dci_model,
        )
        metrics = evaluate_run(
            self.experiment, self.graphdef, self.params, settings, devices=devices, progress=progress
        )
        result = {
            "run": str(self.workdir),
            "variant": self.variant,
            "step": self.step,
            "checkpoint": "newest" if self.checkpoint == "newest" else self.checkpoint_used,
            "split": split,
            **metrics,
        }
        from zoo.training.parallel import is_main_process

        if record and is_main_process():
            runs.record_evaluation(self.workdir, result)
        return result

    def __repr__(self) -> str:
        sampler = "" if self.sampler is None else f", sampler={self.sampler!r}"
        return (
            f"Run({str(self.workdir)!r}, variant={self.variant!r}, step={self.step}, "
            f"checkpoint={self.checkpoint!r}{sampler})"
        )
