"""The contract of each kind, checked when a model is built, before any training.

`check_model` traces the model abstractly (`jax.eval_shape`: no compute) at a
batch size that no other dimension of the model has, so a distribution whose
batch and event axes are swapped or merged cannot pass by coincidence, and
checks what the zoo later calls on each component: the batch and event shape
of every distribution, the shapes and dtypes of its samples, log-densities and
means, the decoder's output and the KL term. Given a few real examples (when
training) it then runs the model once on them, as one jitted program, and
refuses non-finite values. A violation is a
`ContractError` (a `ModelBuildError`): one line naming the recipe key, the
component and what was expected against what was found. The contract itself
is written in zoo/core/interfaces.py and docs/plugins.md.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, Hashable, Mapping, Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from zoo.errors import ModelBuildError, first_line
from zoo.core.interfaces import Condition, Dataset, Decoder, Encoder, Likelihood, Prior

# The model under check (zoo.core.model.LatentVariableModel): the model's assembly runs these
# checks, so they take it as it comes rather than import its module back.
Model = Any

PROTOCOLS = {"encoder": Encoder, "prior": Prior, "decoder": Decoder, "likelihood": Likelihood}

KINDS_OF_MODEL = ("encoder", "prior", "decoder", "likelihood")
EXAMPLE_ROWS = 4  # real examples for the finite-values check


class ContractError(ModelBuildError):
    """A component's output does not match its kind's contract (shapes, dtypes, finite values)."""


def distinct_size(taken: set[int], start: int) -> int:
    """The smallest size >= start that is none of `taken`."""
    size = start
    while size in taken:
        size += 1
    return size


class Checker:
    """The checks of one built model; `fail(kind, ...)` names the recipe key and the component."""

    def __init__(self, model: Model, recipe: Mapping[str, Any]) -> None:
        from zoo.core.recipes import latent_sizes

        self.model = model
        self.names = {kind: recipe[kind]["name"] for kind in KINDS_OF_MODEL}
        self.variant = recipe.get("variant")
        dims = {
            model.latent_dim,
            model.likelihood.params_per_dim,
            *model.x_shape,
            *(model.c_shape or ()),
            *latent_sizes(recipe),
        }
        # No other axis of the model has this length: batch and event axes cannot be confused.
        self.batch = distinct_size(dims, 3)
        self.samples = distinct_size(dims | {self.batch}, 2)

    def fail(self, kind: str, problem: str) -> ContractError:
        key = f"{self.variant}.{kind}" if self.variant else kind
        return ContractError(f"{key}: {kind} {self.names[kind]!r} {problem}")

    def trace(self, kind: str, what: str, function: Callable, *args: Any) -> Any:
        """`jax.eval_shape(function, *args)`; a failure is the component's, as it would be under jax.jit."""
        try:
            return jax.eval_shape(function, *args)
        except ContractError:
            raise
        except Exception as exc:
            raise self.fail(kind, f"fails when traced (as under jax.jit) {what}: {first_line(exc)}") from exc

    def inputs(self, batch: int) -> tuple[jax.ShapeDtypeStruct, Optional[jax.ShapeDtypeStruct], Any]:
        model = self.model
        x = jax.ShapeDtypeStruct((batch,) + model.x_shape, jnp.float32)
        c = None if model.c_shape is None else jax.ShapeDtypeStruct((batch,) + model.c_shape, jnp.float32)
        key = jax.eval_shape(lambda: jax.random.key(0))
        return x, c, key

    def expect(self, kind: str, what: str, found: Any, expected: tuple[int, ...], floating: bool = True) -> None:
        shape = tuple(getattr(found, "shape", found))
        if shape != tuple(expected):
            raise self.fail(kind, f"gives {what} of shape {shape}; expected {tuple(expected)}")
        dtype = getattr(found, "dtype", None)
        if floating and dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
            raise self.fail(kind, f"gives {what} of dtype {dtype}; expected a floating dtype")

    def distribution(
        self, kind: str, found: Any, event: tuple[int, ...], event_name: str, batch: Optional[int] = None
    ) -> None:
        """A distrax.Distribution of batch shape (B,) and the given event shape."""
        batch = self.batch if batch is None else batch
        if not isinstance(found, distrax.Distribution):
            what = "an array" if isinstance(found, jax.Array) else type(found).__name__
            raise self.fail(kind, f"returns {what}; expected a distrax.Distribution")
        batch_shape, event_shape = tuple(found.batch_shape), tuple(found.event_shape)
        if batch_shape != (batch,) or event_shape != tuple(event):
            raise self.fail(
                kind,
                f"returns a distribution of batch shape {batch_shape} and event shape {event_shape} for a batch of "
                f"{batch}; expected batch shape {(batch,)} (one row per example) and event shape "
                f"{tuple(event)} ({event_name})",
            )

    def latent(self, kind: str, make: Callable, *args: Any) -> dict[str, Any]:
        """Trace an encoder or prior: its distribution and the methods the zoo calls on it."""
        b, k, d = self.batch, self.samples, self.model.latent_dim

        def probe(*args: Any) -> dict[str, Any]:
            *inputs, key, z = args
            q = make(*inputs)
            self.distribution(kind, q, (d,), f"the latent, latent_dim {d}")
            z = q.sample(seed=key) if z is None else z
            many = q.sample(seed=key, sample_shape=(k,))
            return {
                "sample": q.sample(seed=key),
                "samples": many,
                "log_prob": q.log_prob(z),
                "log_probs": q.log_prob(many),
                "mean": q.mean(),
                "z": z,
            }

        out = self.trace(kind, "to its distribution, sample, log_prob and mean", probe, *args)
        self.expect(kind, "a sample", out["sample"], (b, d))
        self.expect(kind, "mean", out["mean"], (b, d))
        self.expect(kind, f"{k} samples (sample_shape=({k},))", out["samples"], (k, b, d))
        self.expect(kind, "log_prob", out["log_prob"], (b,))
        self.expect(kind, f"log_prob of {k} samples", out["log_probs"], (k, b))
        return out

    def check_protocols(self) -> None:
        """Each component has the members its Protocol in zoo.core.interfaces names."""
        for kind, protocol in PROTOCOLS.items():
            component = getattr(self.model, kind)
            if not isinstance(component, protocol):
                members = ", ".join(protocol_members(protocol))
                raise self.fail(
                    kind,
                    f"is a {type(component).__name__}, without what zoo.core.interfaces.{protocol.__name__} "
                    f"requires ({members})",
                )

    def check_shapes(self) -> None:
        """Every component's output against the contract, traced abstractly."""
        model, b = self.model, self.batch
        x, c, key = self.inputs(b)
        q = self.latent("encoder", lambda x, c: model.encode(x, c), x, c, key, None)
        self.latent("prior", lambda c: model.prior_distribution(c, b), c, key, q["z"])
        self.check_kl(x, c, key)
        self.check_decoder(b)

    def check_kl(self, x: Any, c: Any, key: Any) -> None:
        from zoo.core.divergence import sample_with_kl

        model, b = self.model, self.batch
        kl = self.trace(
            "prior",
            "in KL(q || p) against the encoder's q",
            lambda x, c, key: sample_with_kl(model.encode(x, c), model.prior_distribution(c, b), key)[1],
            x,
            c,
            key,
        )
        self.expect("prior", "KL(q || p) against the encoder's q", kl, (b,))

    def check_decoder(self, batch: int) -> None:
        """The decoder's parameters fit the likelihood, which scores x with one number per example."""
        model, names = self.model, self.names
        x, c, _ = self.inputs(batch)
        z = jax.ShapeDtypeStruct((batch, model.latent_dim), jnp.float32)
        expected = (batch,) + model.x_shape + (model.likelihood.params_per_dim,)
        try:
            params = jax.eval_shape(lambda z, c: model.decoder(z, c), z, c)
        except Exception as exc:
            raise self.fail("decoder", f"fails on z of shape {z.shape}: {first_line(exc)}") from exc
        if tuple(params.shape) != expected:
            raise ContractError(
                f"decoder {names['decoder']!r} outputs shape {tuple(params.shape)} but likelihood "
                f"{names['likelihood']!r} needs {expected} (batch, data shape {model.x_shape}, "
                f"{model.likelihood.params_per_dim} parameter(s) per dimension)"
            )
        self.expect("decoder", "parameters", params, expected)
        seen: dict[str, Any] = {}  # the distribution, for its static shapes

        def score(params: Any, x: Any) -> dict[str, Any]:
            p_x = model.likelihood(params)
            seen["distribution"] = p_x
            return {"log_prob": p_x.log_prob(x), "mean": p_x.mean(), "mode": p_x.mode()}

        try:
            out = jax.eval_shape(score, params, x)
        except Exception as exc:
            raise self.fail("likelihood", f"cannot score data of shape {model.x_shape}: {first_line(exc)}") from exc
        if tuple(out["log_prob"].shape) != (batch,):
            raise ContractError(
                f"likelihood {names['likelihood']!r} gives log-probabilities of shape {tuple(out['log_prob'].shape)} "
                f"for a batch of {batch}; its event shape must be the data shape {model.x_shape} "
                "(log_prob summed over every dimension of x)"
            )
        self.distribution("likelihood", seen["distribution"], model.x_shape, "the data shape", batch)
        self.expect("likelihood", "log_prob", out["log_prob"], (batch,))
        self.expect("likelihood", "mean", out["mean"], (batch,) + model.x_shape)
        self.expect("likelihood", "mode", out["mode"], (batch,) + model.x_shape, floating=False)  # a Bernoulli's is int

    def check_finite(self, x: jax.Array, c: Optional[jax.Array]) -> None:
        """One pass over real examples, compiled as one program (cheaper than op by op): every
        value the loss is made of is finite."""
        from flax import nnx

        graphdef, state = nnx.split(self.model)
        try:
            values = finite_values_program(graphdef)
        except TypeError:  # a module with an unhashable static attribute: a program of its own
            values = finite_values_program.__wrapped__(graphdef)
        found = values(state, x, c, jax.random.key(0))
        for kind, key, what in (
            ("encoder", "encoder", "its distribution's sample, log_prob and mean"),
            ("prior", "prior", "its distribution's log_prob of the encoder's samples, mean and sample"),
            ("prior", "kl", "KL(q || p) against the encoder's q"),
            ("decoder", "decoder", "its output"),
            ("likelihood", "likelihood", "log_prob of the examples"),
        ):
            bad = [a for a in found[key] if not np.all(np.isfinite(np.asarray(a)))]
            if bad:
                values_seen = sorted({str(v) for v in np.asarray(bad[0]).ravel() if not np.isfinite(v)})
                raise self.fail(
                    kind,
                    f"gives non-finite values ({', '.join(values_seen)}) in {what} on {x.shape[0]} "
                    "real examples, so the loss is not finite",
                )


@functools.lru_cache(maxsize=64)
def finite_values_program(graphdef: Any) -> Callable:
    """The jitted pass of `Checker.check_finite` for models of this structure (an nnx GraphDef,
    hashable and equal for models built alike): a model built again reuses the traced program."""
    from flax import nnx

    from zoo.core.divergence import sample_with_kl

    @jax.jit
    def values(state: Any, x: jax.Array, c: Optional[jax.Array], key: jax.Array) -> dict[str, Any]:
        model = nnx.merge(graphdef, state)
        q = model.encode(x, c)
        p = model.prior_distribution(c, x.shape[0])
        z, kl = sample_with_kl(q, p, key)
        params = model.decoder(z, c)
        return {
            "encoder": (z, q.log_prob(z), q.mean()),
            "prior": (p.log_prob(z), p.mean(), p.sample(seed=key)),
            "kl": (kl,),
            "decoder": (params,),
            "likelihood": (model.likelihood(params).log_prob(x),),
        }

    return values


# The abstract checks' passes in this process, by what decides them: the resolved recipe, the
# factory and the class of each of the four components (another definition, as when a notebook
# cell runs again, is another key), and the shapes of x and c. A model built again from the same
# recipe (a run trained, then loaded to evaluate; a suite's seeds) is traced once; tracing was a
# sixth of the fast test tier. The finite-values check reads real examples and runs every time.
ABSTRACT_PASSES: collections.OrderedDict[Hashable, None] = collections.OrderedDict()
REMEMBERED_PASSES = 256


def check_model(
    model: Model, recipe: Mapping[str, Any], example: Optional[tuple[Any, Any]] = None, *, made_by: Any = None
) -> None:
    """Refuse a model whose components do not keep their kind's contract (see the module docstring).

    `example` is `(x, c)`, a few real examples (c None when unconditional), for the finite-values check.
    `made_by` (hashable: the recipe as text and the components' factories, from `build_model`)
    lets a model that passed the abstract checks pass again untraced; None checks every time.
    """
    checker = Checker(model, recipe)
    checks_key = None
    if made_by is not None:
        classes = tuple(type(getattr(model, kind)) for kind in KINDS_OF_MODEL)
        checks_key = (
            made_by,
            classes,
            tuple(model.x_shape),
            None if model.c_shape is None else tuple(model.c_shape),
        )
    if checks_key is None or checks_key not in ABSTRACT_PASSES:
        checker.check_protocols()
        checker.check_decoder(2)
        checker.check_shapes()
        if checks_key is not None:
            ABSTRACT_PASSES[checks_key] = None
            while len(ABSTRACT_PASSES) > REMEMBERED_PASSES:
                ABSTRACT_PASSES.popitem(last=False)
    if example is not None:
        x, c = example
        checker.check_finite(jnp.asarray(x), None if c is None else jnp.asarray(c))


def protocol_members(protocol: type) -> list[str]:
    """The members a Protocol of zoo.core.interfaces declares: its methods, properties and attributes."""
    names = [n for n in vars(protocol) if not n.startswith("_") or n == "__call__"]
    names += [n for n in getattr(protocol, "__annotations__", {}) if n not in names]
    return [n for n in names if n not in ("_is_protocol", "_is_runtime_protocol")]


def example_batch(
    recipe: Mapping[str, Any], dataset: Dataset, condition: Any, rows: int = EXAMPLE_ROWS
) -> tuple[Any, Any]:
    """(x, c) of the first few training examples, for `check_model`'s finite-values check;
    the condition is checked to split them into its declared x_shape and c_shape."""
    name = (recipe.get("condition") or {}).get("name")
    where = f"{recipe.get('variant')}.condition: condition {name!r}" if name else None
    if where and not isinstance(condition, Condition):
        members = ", ".join(protocol_members(Condition))
        raise ContractError(
            f"{where} is a {type(condition).__name__}, without what zoo.core.interfaces.Condition requires ({members})"
        )
    train = dataset.train
    x, c = condition.split(jnp.asarray(train.images[:rows]), jnp.asarray(train.labels[:rows]))
    found = (tuple(x.shape), None if c is None else tuple(c.shape))
    count = len(train.images[:rows])
    expected = (
        (count,) + tuple(condition.x_shape),
        None if condition.c_shape is None else (count,) + tuple(condition.c_shape),
    )
    if where and found != expected:
        raise ContractError(
            f"{where} splits {count} images into x and c of shapes {found}; expected {expected} "
            "(its x_shape and c_shape)"
        )
    return x, c


# --- The contract as documentation: docs/plugins.md's section, generated from zoo.core.interfaces ---

# Each kind, the context arguments its factory may ask for come from zoo.core.registry; what it returns from these Protocols.
DOCUMENTED = (
    ("encoder", ("Encoder", "LatentDistribution", "DiscretePosterior")),
    ("prior", ("Prior",)),
    ("decoder", ("Decoder", "DenseExportable", "DenseNetwork")),
    ("likelihood", ("Likelihood", "DataDistribution")),
    ("objective", ("Objective",)),
    ("condition", ("Condition",)),
    ("dataset", ("Dataset", "Split")),
)


def member_docs(cls: type) -> dict[str, str]:
    """The docstring of each member of a class of zoo.core.interfaces, attributes' included (read from the source)."""
    import ast
    import inspect

    docs = {}
    body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    for node, following in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = (
                following.value.value
                if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                else ""
            )
            docs[node.target.id] = inspect.cleandoc(str(text))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            docs[node.name] = inspect.cleandoc(ast.get_docstring(node) or "")
    return docs


def member_line(cls: type, name: str, doc: str) -> str:
    """One list item: the member's signature (no annotations) and its docstring on one line."""
    import inspect

    value = inspect.getattr_static(cls, name, None)
    if isinstance(value, property):
        head = f"`{name}` (property)"
    elif callable(value):
        params = [p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(value).parameters.values()]
        head = f"`{name}({', '.join(str(p) for p in params if p.name != 'self')})`"
    else:
        head = f"`{name}` (attribute)"
    return f"- {head}: {' '.join(doc.split())}" if doc else f"- {head}"


def contract_markdown() -> str:
    """The section of docs/plugins.md between its `contract` markers, from zoo.core.interfaces and zoo.core.registry."""
    import inspect

    from zoo.core import interfaces
    from zoo.core.registry import CONTEXT_ARGUMENTS

    out = []
    for kind, names in DOCUMENTED:
        context = ", ".join(f"`{a}`" for a in CONTEXT_ARGUMENTS[kind]) or "none"
        out += [f"### {kind}", "", f"Context arguments of its factory: {context}.", ""]
        for name in names:
            cls = getattr(interfaces, name)
            out += [f"`zoo.core.interfaces.{name}`: {' '.join((inspect.getdoc(cls) or '').split())}", ""]
            docs = member_docs(cls)
            members = [n for n in docs if not n.startswith("_") or n == "__call__"]
            out += [member_line(cls, n, docs[n]) for n in members] + [""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(contract_markdown(), end="")
