"""The contract checked when a model is built (zoo/core/contract.py): a component that breaks it is
refused with one line naming the recipe key, the component, what was expected and what was found,
before training starts and before the run directory is written."""

import distrax
import jax.numpy as jnp
import pytest
from flax import nnx

import zoo
from vae_zoo_plugins.base.mlp import make_mlp_decoder, make_mlp_encoder
from tests.conftest import first_party_registry, plugin_of
from zoo.cli import main as cli
from zoo.core import plugin_manager
from zoo.core.contract import ContractError
from zoo.core.assembly import assemble
from zoo.training.experiment import train_and_evaluate

SMALL = ["encoder.hidden=[8]", "decoder.hidden=[8]", "latent_dim=4", "train.batch_size=4", "train.steps=2"]


class PerUnitNormalPrior(nnx.Module):
    """A standard normal per latent unit (batch (B, D), event ()), not one distribution over z."""

    def __init__(self, latent_dim):
        self.latent_dim = latent_dim

    def __call__(self, c, batch_size):
        return distrax.Normal(jnp.zeros((batch_size, self.latent_dim)), 1.0)


class OneRowPrior(nnx.Module):
    """N(0, I) for one row whatever the batch size."""

    def __init__(self, latent_dim):
        self.latent_dim = latent_dim

    def __call__(self, c, batch_size):
        return distrax.MultivariateNormalDiag(jnp.zeros((1, self.latent_dim)), jnp.ones((1, self.latent_dim)))


def make_array_encoder(x_shape, c_shape, latent_dim, rngs):
    """An encoder that returns the posterior mean as an array, not a distribution."""
    inner = make_mlp_encoder(x_shape, c_shape, latent_dim, rngs, hidden=(4,))

    class ArrayEncoder(nnx.Module):
        def __init__(self):
            self.inner = inner

        def __call__(self, x, c=None):
            return self.inner(x, c).mean()

    return ArrayEncoder()


def make_branching_encoder(x_shape, c_shape, latent_dim, rngs):
    """An encoder with a Python branch on the data's values, which cannot be traced."""
    inner = make_mlp_encoder(x_shape, c_shape, latent_dim, rngs, hidden=(4,))

    class BranchingEncoder(nnx.Module):
        def __init__(self):
            self.inner = inner

        def __call__(self, x, c=None):
            return self.inner(x if x.mean() > 0.5 else 1 - x, c)

    return BranchingEncoder()


def make_nan_decoder(latent_dim, c_shape, output_shape, rngs):
    """A decoder whose output is NaN."""
    inner = make_mlp_decoder(latent_dim, c_shape, output_shape, rngs, hidden=(4,))

    class NaNDecoder(nnx.Module):
        def __init__(self):
            self.inner = inner

        def __call__(self, z, c=None):
            return self.inner(z, c) * jnp.nan

    return NaNDecoder()


BROKEN = plugin_of(
    "broken_components",
    ("prior", "per_unit_normal", lambda latent_dim: PerUnitNormalPrior(latent_dim)),
    ("prior", "one_row", lambda latent_dim: OneRowPrior(latent_dim)),
    ("encoder", "array", make_array_encoder),
    ("encoder", "branching", make_branching_encoder),
    ("decoder", "nan", make_nan_decoder),
)


@pytest.fixture(scope="module")
def broken():
    return first_party_registry(BROKEN)


def build_error(book, registry, *overrides, variant="vae_mlp"):
    with pytest.raises(ContractError) as info:
        assemble(book.resolve(variant, registry, [*SMALL, *overrides]), registry)
    assert isinstance(info.value, zoo.ModelBuildError) and "\n" not in str(info.value)
    return str(info.value)


def test_a_prior_with_batch_and_event_axes_swapped_is_refused_before_training(book, broken, tmp_path):
    # Batch size equal to the latent size: the shapes broadcast, and training would run on a wrong KL.
    recipe = book.resolve("vae_mlp", broken, [*SMALL, "prior={name: per_unit_normal}"])
    assert recipe["train"]["batch_size"] == recipe["latent_dim"] == 4
    with pytest.raises(ContractError) as info:
        train_and_evaluate(recipe, tmp_path / "run", broken, progress=False)
    assert str(info.value) == (
        "vae_mlp.prior: prior 'per_unit_normal' returns a distribution of batch shape (3, 4) and event shape () "
        "for a batch of 3; expected batch shape (3,) (one row per example) and event shape (4,) (the latent, latent_dim 4)"
    )
    assert not (tmp_path / "run").exists()


def test_a_prior_that_ignores_the_batch_size_is_refused(book, broken):
    assert build_error(book, broken, "prior={name: one_row}").startswith(
        "vae_mlp.prior: prior 'one_row' returns a distribution of batch shape (1,) and event shape (4,) for a batch of 3; "
        "expected batch shape (3,)"
    )


def test_an_encoder_that_returns_an_array_is_refused(book, broken):
    message = build_error(book, broken, "encoder={name: array}")
    assert message == "vae_mlp.encoder: encoder 'array' returns an array; expected a distrax.Distribution"


def test_an_encoder_that_cannot_be_traced_is_refused(book, broken):
    message = build_error(book, broken, "encoder={name: branching}")
    assert message.startswith("vae_mlp.encoder: encoder 'branching' fails when traced (as under jax.jit)")
    assert "TracerBoolConversionError" in message


def test_a_decoder_with_non_finite_output_is_refused_on_real_examples(book, broken):
    message = build_error(book, broken, "decoder={name: nan}")
    assert message == (
        "vae_mlp.decoder: decoder 'nan' gives non-finite values (nan) in its output on 4 real examples, "
        "so the loss is not finite"
    )


def test_the_command_prints_one_line_and_writes_no_run(broken, monkeypatch, tmp_path, capsys):
    recipes = tmp_path / "mine.yaml"
    recipes.write_text("bad:\n  base: vae_mlp\n  latent_dim: 4\n  prior: {name: per_unit_normal}\n")
    monkeypatch.setattr(plugin_manager, "_DEFAULT", broken)
    status = cli.main(["--recipes", str(recipes), "train", "bad", "--workdir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("zoo: error: bad.prior: prior 'per_unit_normal' returns a distribution of batch shape (3, 4)")
    assert not (tmp_path / "run").exists()


def test_hierarchies_vampprior_and_conditional_priors_keep_the_contract(book, registry):
    paper = ["dataset={name: digits}", "train.epochs=null", "objective={name: elbo}", "prior.num_pseudo_inputs=5"]
    for variant, overrides in (
        ("hvae_vampprior_paper", [*paper, "latent_dim=[3, 4]"]),
        ("vampprior_paper", paper),
        ("cvae_sohn", []),
        ("cvae_quadrants", []),
    ):
        assemble(book.resolve(variant, registry, ["train.batch_size=4", *overrides]), registry)  # no ContractError


class RowsPrior(nnx.Module):
    """N(0, I) over z in `rows` rows; None: one per example, as the contract asks."""

    def __init__(self, latent_dim, rows):
        self.latent_dim, self.rows = latent_dim, rows

    def __call__(self, c, batch_size):
        shape = (self.rows or batch_size, self.latent_dim)
        return distrax.MultivariateNormalDiag(jnp.zeros(shape), jnp.ones(shape))


def test_a_model_built_again_is_not_traced_again_but_a_component_defined_again_is_checked(book, monkeypatch):
    """The abstract checks' passes are remembered by recipe, factories, classes and shapes: the same
    recipe built again skips the tracing, and a prior of the same name and class made by a factory
    defined again (a notebook cell run again, here broken) is checked, and refused, although the
    recipe's text and the prior's class are the same."""
    from zoo.core import contract

    traced = []
    check_shapes = contract.Checker.check_shapes
    monkeypatch.setattr(contract.Checker, "check_shapes", lambda self: traced.append(1) or check_shapes(self))
    good = first_party_registry(plugin_of("first", ("prior", "mine", lambda latent_dim: RowsPrior(latent_dim, None))))
    recipe = book.resolve("vae_mlp", good, [*SMALL, "prior={name: mine}"])
    assemble(recipe, good)
    assemble(recipe, good)
    assert len(traced) == 1
    again = first_party_registry(plugin_of("again", ("prior", "mine", lambda latent_dim: RowsPrior(latent_dim, 1))))
    with pytest.raises(ContractError, match="prior 'mine' returns a distribution of batch shape"):
        assemble(book.resolve("vae_mlp", again, [*SMALL, "prior={name: mine}"]), again)
    assert len(traced) == 2
