"""Samplers fitted after training: a prior fitted to a trained run's codes, chosen when sampling
(`zoo sample RUN --sampler NAME --set sampler.OPTION=VALUE`, `Run.sample(sampler=NAME)`) in place
of the run's own prior.

A sampler is a registered prior whose factory says `factory.sampler = True` and whose instance has
`fit_after_training(model, x, c, batch_size)` (a Gaussian mixture, a flow, a second-stage VAE, an
autoregressive prior over codes). It is built for the run's model (the context a recipe's prior
gets), checked to be over the run's kind of latent, fitted to the codes of the run's training
split, and its fitted arrays are kept in RUN/samplers/NAME-stepSTEP-HASH.npz, HASH naming its
options: the next call with the same options on the same checkpoint reads them instead of fitting.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import jax.numpy as jnp
import numpy as np
from flax import nnx

from zoo.core.data import evaluation_split
from zoo.core.interfaces import latent_kind
from zoo.core.model import LatentVariableModel
from zoo.core.recipes import latent_sizes, validate_component
from zoo.core.registry import Registry, build_component, unknown_name_message
from zoo.errors import ModelBuildError, RecipeError, ZooError, set_source

SAMPLERS_DIR = "samplers"
SPEC_KEY = "__sampler__"  # the sampler's options, beside its arrays in the cache file


def sampler_names(registry: Registry) -> list[str]:
    """The registered priors that are samplers fitted after training."""
    return [c.name for c in registry.list("prior") if getattr(c.factory, "sampler", False)]


def sampler_spec(name: str, options: Optional[Mapping[str, Any]], registry: Registry) -> dict[str, Any]:
    """`{name, **options}` with every option checked against the factory (type, range) and the
    defaults filled in: what the sampler is built from and its cache is named by."""
    known = sampler_names(registry)
    if name not in known:
        raise ZooError(unknown_name_message("sampler", name, known))

    def fail(path: str, problem: str) -> RecipeError:
        option = path.partition(".")[2] or "name"
        problem = problem.replace(f"prior {name!r}", f"sampler {name!r}")
        return RecipeError(f"{set_source()}: sampler.{option}: {problem}")

    return validate_component("prior", {"name": name, **dict(options or {})}, registry, fail)


def cache_path(workdir: Path, spec: Mapping[str, Any], step: int) -> Path:
    """Where the sampler `spec` fitted to the codes of checkpoint `step` is kept."""
    digest = hashlib.sha256(json.dumps(dict(spec), sort_keys=True).encode()).hexdigest()[:10]
    return Path(workdir) / SAMPLERS_DIR / f"{spec['name']}-step{step}-{digest}.npz"


def own_variables(prior: nnx.Module, model: nnx.Module) -> dict[str, nnx.Variable]:
    """The sampler's variables by path, less those of the model it holds (a prior over codes holds
    the model's encoder, whose codebook comes from the checkpoint, not from the fit)."""
    shared = {id(node) for _, node in nnx.iter_graph(model) if isinstance(node, nnx.Variable)}
    return {
        "/".join(map(str, path)): node
        for path, node in nnx.iter_graph(prior)
        if isinstance(node, nnx.Variable) and id(node) not in shared
    }


def save_fit(path: Path, variables: Mapping[str, nnx.Variable], spec: Mapping[str, Any]) -> None:
    """Write the fitted arrays (and the options they were fitted with), atomically: a reader never
    sees half a file. A run directory we may not write to is left as it is (the fit is then redone)."""
    arrays = {key: np.asarray(variable[...]) for key, variable in variables.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(partial, **arrays, **{SPEC_KEY: np.array(json.dumps(dict(spec), sort_keys=True))})  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
        partial.replace(path)
    except OSError:
        pass


def load_fit(path: Path, variables: Mapping[str, nnx.Variable], spec: Mapping[str, Any]) -> bool:
    """Fill the variables from a cache file holding this very fit; False (nothing changed) when
    there is none, or it holds another (other options, other arrays, a damaged file)."""
    try:
        with np.load(path) as saved:
            arrays = {key: saved[key] for key in saved.files}
    except (OSError, ValueError):
        return False
    if str(arrays.pop(SPEC_KEY, "")) != json.dumps(dict(spec), sort_keys=True) or set(arrays) != set(variables):
        return False
    if any(arrays[key].shape != variable[...].shape for key, variable in variables.items()):
        return False
    for key, variable in variables.items():
        variable[...] = jnp.asarray(arrays[key])
    return True


def build_sampler(spec: Mapping[str, Any], run: Any, model: LatentVariableModel, registry: Registry) -> Any:
    """The sampler built for the run's model with its trained parameters (a prior over codes holds
    its encoder), refused (one line naming the sampler, the run and its latent) where it does not
    suit the run: a conditional model, another kind of latent."""
    recipe, name = run.experiment.recipe, spec["name"]
    where = f"sampler {name!r} does not suit run {run.workdir}"
    if model.conditional:
        raise ZooError(
            f"{where}: the run is conditional ({run.variant}), and a sampler fits p(z) to the codes without "
            "their condition; sample it with its own prior"
        )
    kind = f"a {model.latent_kind} latent (encoder {recipe['encoder']['name']!r})"
    try:
        prior = build_component(
            registry,
            "prior",
            spec,
            ModelBuildError,
            latent_dim=model.latent_dim,
            latent_sizes=latent_sizes(recipe),
            c_shape=None,
            encoder=model.encoder,
            x_shape=model.x_shape,
            rngs=nnx.Rngs(0),
        )
    except ModelBuildError as exc:  # its factory's refusal (a plugin's fault stays one, naming the plugin)
        raise ZooError(f"{where}, whose model has {kind}: {exc}") from exc
    if latent_kind(prior) != model.latent_kind:
        raise ZooError(f"{where}: {name} fits a {latent_kind(prior)} latent, and the run's model has {kind}")
    if not callable(getattr(prior, "fit_after_training", None)):
        raise ZooError(f"{where}: prior {name!r} has no fit_after_training method, which a sampler needs")
    return prior


def fit_to_training_split(name: str, prior: Any, model: LatentVariableModel, run: Any) -> None:
    """Fit the sampler to the run's training split, refused where the run's dataset has none."""
    dataset = run.experiment.dataset
    if not len(dataset.train.images):
        raise ZooError(
            f"sampler {name!r} is fitted to the training split of run {run.workdir}, and its "
            f"dataset {dataset.name!r} has no training split to fit it to"
        )
    train = evaluation_split(dataset, "train")
    x, c = run.experiment.condition.split(jnp.asarray(train.images), jnp.asarray(train.labels))
    prior.fit_after_training(model, x, c)


def with_fitted_sampler(run: Any, spec: Mapping[str, Any], registry: Registry) -> tuple[LatentVariableModel, bool]:
    """(the run's model with the sampler `spec` as its prior, whether it was fitted now rather than
    read from the run's cache)."""
    model = run.model
    prior = build_sampler(spec, run, model, registry)
    variables = own_variables(prior, model)
    path = cache_path(run.workdir, spec, run.step)
    fitted_now = not load_fit(path, variables, spec)
    if fitted_now:
        fit_to_training_split(spec["name"], prior, model, run)
        save_fit(path, variables, spec)
    model.prior = prior
    return model, fitted_now
