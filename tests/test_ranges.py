"""Options with a natural range (a mixing weight in [0, 1], a count >= 1, a scale > 0) carry it as
an annotation (zoo.config.Interval: AtLeast, AtMost, Above, Between), and recipe validation refuses
a value outside it before anything is built, naming the key."""

from __future__ import annotations

import math

import pytest

import zoo
from zoo.core import objectives
from zoo.config import Above, AtLeast, AtMost, Between, Interval, describe, intervals, type_hints
from zoo.core.recipes import validate_component

# Every option of the zoo's components that has a range, and the range: a new option with a
# natural range belongs here and in its factory's signature.
RANGES = {
    ("encoder", "conv", "hidden"): AtLeast(1),
    ("encoder", "iaf_mlp", "steps"): AtLeast(1),
    ("encoder", "planar_mlp", "steps"): AtLeast(1),
    ("encoder", "vq_mlp", "codebook_size"): AtLeast(1),
    ("encoder", "vq_mlp", "code_dim"): AtLeast(1),
    ("encoder", "wrapped_normal_mlp", "curvature"): Above(0),
    ("prior", "wrapped_normal", "curvature"): Above(0),
    ("objective", "hamiltonian_elbo", "leapfrog_steps"): AtLeast(1),
    ("objective", "vq", "ema_decay"): Between(0, 1),
    ("objective", "vq", "restart_rate"): Between(0, 1),
    ("prior", "conditional", "fixed_scale"): Above(0),
    ("prior", "vampprior", "num_pseudo_inputs"): AtLeast(1),
    ("prior", "vampprior", "init_std"): AtLeast(0),
    ("prior", "hierarchical", "num_pseudo_inputs"): AtLeast(1),
    ("prior", "hierarchical", "init_std"): AtLeast(0),
    ("prior", "mixture", "num_components"): AtLeast(1),
    ("prior", "mixture", "init_spread"): AtLeast(0),
    ("likelihood", "gaussian_fixed", "scale"): Above(0),
    ("likelihood", "gaussian_diagonal", "min_scale"): AtLeast(0),
    ("objective", "hybrid", "alpha"): Between(0, 1),
    ("objective", "beta_elbo", "beta"): AtLeast(0),
    ("objective", "iwae", "num_samples"): AtLeast(1),
    ("objective", "vq", "commitment"): AtLeast(0),
    ("objective", "beta_tc", "beta"): AtLeast(0),
    ("objective", "beta_tc", "alpha"): AtLeast(0),
    ("objective", "beta_tc", "gamma"): AtLeast(0),
    ("objective", "info_vae", "alpha"): AtMost(1),
    ("objective", "info_vae", "lambda_weight"): AtLeast(0),
    ("objective", "info_vae", "kernel_scale"): Above(0),
    ("objective", "wae_mmd", "mmd_weight"): AtLeast(0),
    ("objective", "wae_mmd", "kernel_scale"): Above(0),
    ("objective", "annealed_vae", "gamma"): AtLeast(0),
    ("objective", "annealed_vae", "capacity_start"): AtLeast(0),
    ("objective", "annealed_vae", "capacity_end"): AtLeast(0),
    ("objective", "annealed_vae", "capacity_steps"): AtLeast(1),
    **{
        ("objective", name, option): AtLeast(0)
        for name in ("dip_vae_i", "dip_vae_ii")
        for option in ("lambda_od", "lambda_d")
    },
    **{("objective", name, "num_estimates"): AtLeast(1) for name in ("miwae", "piwae")},
    **{("objective", name, "num_samples"): AtLeast(1) for name in ("miwae", "piwae", "ciwae")},
    ("objective", "ciwae", "beta"): Between(0, 1),
    **{("objective", name, "discriminator_hidden"): AtLeast(1) for name in ("factor_vae", "aae", "vae_gan")},
    ("objective", "factor_vae", "gamma"): AtLeast(0),
    ("objective", "aae", "adversarial_weight"): AtLeast(0),
    ("objective", "vae_gan", "gamma"): AtLeast(0),
    **{
        ("objective", name, option): AtLeast(0)
        for name in ("rae_l2", "rae_gp")
        for option in ("beta", "decoder_weight")
    },
    **{("prior", name, "num_components"): AtLeast(1) for name in ("fitted_gmm", "gmm_fitted")},
    # The samplers fitted after training: their networks' sizes and fitting budgets.
    **{
        ("prior", name, option): AtLeast(1)
        for name in ("maf_fitted", "two_stage", "pixelcnn_codes")
        for option in ("steps", "batch_size")
    },
    **{("prior", name, "learning_rate"): Above(0) for name in ("maf_fitted", "two_stage", "pixelcnn_codes")},
    **{("prior", name, "seed"): AtLeast(0) for name in ("maf_fitted", "two_stage", "pixelcnn_codes")},
    ("prior", "maf_fitted", "layers"): AtLeast(1),
    ("prior", "two_stage", "second_latent_dim"): AtLeast(1),
    ("prior", "two_stage", "importance_samples"): AtLeast(1),
    ("prior", "pixelcnn_codes", "channels"): AtLeast(1),
    ("prior", "pixelcnn_codes", "layers"): AtLeast(1),
    ("prior", "pixelcnn_codes", "kernel_size"): AtLeast(2),
    ("condition", "visible_quadrants", "visible"): Between(0, 3),
    ("dataset", "digits", "validation_size"): AtLeast(0),
    ("dataset", "digits", "test_size"): AtLeast(1),
    ("dataset", "digits", "seed"): AtLeast(0),
    ("dataset", "dsprites", "image_size"): AtLeast(8),
    **{
        ("dataset", "dsprites", option): AtLeast(1)
        for option in ("scales", "orientations", "positions", "num_images", "test_size")
    },
    **{("dataset", "dsprites", option): AtLeast(0) for option in ("validation_size", "seed")},
    ("dataset", "color_dsprites", "image_size"): AtLeast(8),
    **{
        ("dataset", "color_dsprites", option): AtLeast(1)
        for option in ("scales", "orientations", "positions", "colours", "num_images", "test_size")
    },
    **{("dataset", "color_dsprites", option): AtLeast(0) for option in ("validation_size", "seed")},
    **{("dataset", name, "seed"): AtLeast(0) for name in ("images", "arrays", "tfds")},
    **{
        ("dataset", name, option): Between(0, 0.9)
        for name in ("images", "arrays", "tfds")
        for option in ("validation", "test")
    },
    ("likelihood", "discretized_logistic_mixture", "components"): AtLeast(1),
    **{("objective", name, "kl_warmup_steps"): AtLeast(0) for name in ("elbo", "beta_elbo", "hybrid", "iwae")},
    **{("objective", name, "kl_warmup_epochs"): AtLeast(0) for name in ("elbo", "beta_elbo", "hybrid", "iwae")},
    **{("objective", name, "free_bits"): AtLeast(0) for name in ("elbo", "beta_elbo", "hybrid")},
    **{
        ("dataset", name, option): AtLeast(0)
        for name in ("mnist", "fashion_mnist", "kmnist")
        for option in ("validation_size", "seed")
    },
}


def declared_ranges(registry) -> dict[tuple[str, str, str], Interval]:
    """(kind, name, option) -> its range, read from the factories' annotations (inside Optional and lists too)."""
    found = {}
    for component in registry.list():
        hints = type_hints(component.factory)
        for option in component.options():
            for interval in nested_intervals(hints.get(option)):
                found[(component.kind, component.name, option)] = interval
    return found


def nested_intervals(annotation) -> list[Interval]:
    import typing

    return intervals(annotation) + [i for arg in typing.get_args(annotation) for i in nested_intervals(arg)]


def test_every_option_with_a_natural_range_declares_it(registry):
    assert declared_ranges(registry) == RANGES


def outside(interval: Interval) -> float:
    """A value just outside the range (its own open end, or one past a closed end)."""
    if interval.low != -math.inf:
        return interval.low if interval.low_open else interval.low - 1
    return interval.high if interval.high_open else interval.high + 1


@pytest.mark.parametrize(("kind", "name", "option"), sorted(RANGES), ids=lambda part: str(part))
def test_a_value_outside_the_range_is_refused_naming_the_key(registry, kind, name, option):
    interval = RANGES[(kind, name, option)]
    annotation = type_hints(registry.get(kind, name).factory)[option]
    value = outside(interval)
    value = int(value) if "an int" in describe(annotation) or "ints" in describe(annotation) else value
    bad = [value] if "list" in describe(annotation) else value

    def fail(path, problem):
        return zoo.RecipeError(f"mine.yaml: v.{path}: {problem}")

    with pytest.raises(zoo.RecipeError) as info:
        validate_component(kind, {"name": name, option: bad}, registry, fail)
    assert str(info.value) == f"mine.yaml: v.{kind}.{option}: expected {describe(annotation)}, got {bad!r}"
    assert interval.words() in str(info.value)


def test_hybrid_alpha_2_is_refused_naming_the_key(capsys):
    from zoo.cli.main import main

    assert main(["show", "cvae_sohn", "--set", "objective.alpha=2"]) == 2
    assert (
        capsys.readouterr().err == "zoo: error: --set: cvae_sohn.objective.alpha: expected a float in [0, 1], got 2\n"
    )


@pytest.mark.parametrize(
    ("variant", "assignment", "message"),
    [
        ("cvae_sohn", "objective.alpha=-0.5", "cvae_sohn.objective.alpha: expected a float in [0, 1], got -0.5"),
        ("cvae_sohn", "objective.alpha=.nan", "cvae_sohn.objective.alpha: expected a float in [0, 1], got nan"),
        ("info_vae", "objective.alpha=1.5", "info_vae.objective.alpha: expected a float <= 1, got 1.5"),
        ("wae_mmd", "objective.kernel_scale=0", "wae_mmd.objective.kernel_scale: expected a float > 0 or null, got 0"),
        (
            "quadrant_baseline",
            "prior.fixed_scale=-0.001",
            "quadrant_baseline.prior.fixed_scale: expected a float > 0 or null, got -0.001",
        ),
        (
            "cvae_quadrants",
            "condition.visible=[2, 4]",
            "cvae_quadrants.condition.visible: expected a list of ints in [0, 3], got [2, 4]",
        ),
        (
            "vae_gaussian_mlp",
            "likelihood.min_scale=-1",
            "vae_gaussian_mlp.likelihood.min_scale: expected a float >= 0, got -1",
        ),
        ("vae_mlp", "dataset.seed=-3", "vae_mlp.dataset.seed: expected an int >= 0, got -3"),
    ],
)
def test_recipes_are_refused_outside_a_range(book, registry, variant, assignment, message):
    with pytest.raises(zoo.RecipeError) as info:
        book.resolve(variant, registry, [assignment])
    assert str(info.value) == f"--set: {message}"


@pytest.mark.parametrize(
    ("variant", "assignment"),
    [
        ("cvae_sohn", "objective.alpha=0"),
        ("cvae_sohn", "objective.alpha=1"),
        ("info_vae", "objective.alpha=-2.0"),
        ("wae_mmd", "objective.kernel_scale=null"),
        ("cvae_quadrants", "condition.visible=[0, 3]"),
    ],
)
def test_the_ends_of_a_closed_range_and_null_are_accepted(book, registry, variant, assignment):
    book.resolve(variant, registry, [assignment])


def test_factories_check_their_ranges_for_callers_from_python():
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\], got 1.5"):
        objectives.hybrid(alpha=1.5)
    with pytest.raises(ValueError, match="num_samples must be at least 1, got 0"):
        objectives.iwae(num_samples=0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        objectives.beta_elbo(beta=-1)


def test_interval_words_and_membership():
    assert [i.words() for i in (AtLeast(1), AtMost(1), Above(0), Between(0, 1), Interval(0, 1, low_open=True))] == [
        ">= 1",
        "<= 1",
        "> 0",
        "in [0, 1]",
        "in (0, 1]",
    ]
    assert 0 in Between(0, 1) and 1 in Between(0, 1) and 1.01 not in Between(0, 1) and math.nan not in Between(0, 1)
    assert 0 not in Above(0) and 1e-9 in Above(0) and math.inf in AtLeast(0) and -math.inf not in AtLeast(0)
