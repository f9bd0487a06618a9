"""Jitted programs kept per run structure (zoo.training.programs): a run of the same structure,
whatever its seed, reuses the last one's programs and trains exactly as with nothing kept."""

import collections

import jax
import numpy as np

from zoo.core.assembly import program_structure
from zoo.evaluation.trained_run import Run
from zoo.training import programs
from tests.conftest import train_tiny


def test_a_program_is_built_once_per_equal_key_and_every_time_for_an_unhashable_or_missing_one(monkeypatch):
    monkeypatch.setattr(programs, "_kept", collections.OrderedDict())
    built = []

    def build():
        built.append(len(built))
        return lambda: built[-1]

    first = programs.kept_program(("step", (1, 2)), build)
    assert programs.kept_program(("step", (1, 2)), build) is first and len(built) == 1
    programs.kept_program(("step", [1, 2]), build)  # a list: unhashable, nothing to find it by
    programs.kept_program(("step", [1, 2]), build)
    programs.kept_program(None, build)
    assert len(built) == 4


def test_beyond_the_limit_the_longest_unused_program_goes_first(monkeypatch):
    monkeypatch.setattr(programs, "_kept", collections.OrderedDict())
    monkeypatch.setattr(programs, "KEPT_PROGRAMS", 2)
    for key in ("a", "b"):
        programs.kept_program(key, lambda: print)
    programs.kept_program("a", lambda: print)  # used again: "b" is now the oldest
    programs.kept_program("c", lambda: print)
    assert list(programs._kept) == ["a", "c"]


def test_the_structure_leaves_out_the_seed_and_keeps_everything_the_step_closes_over(book, registry):
    def structure(*overrides):
        recipe = book.resolve("vae_mlp", registry, ["latent_dim=2", *overrides])
        return program_structure(recipe, registry, "condition", 100)

    assert structure("train.seed=0") == structure("train.seed=7")
    assert structure("train.log_every=5", "train.checkpoint_every=10") == structure()  # the loop's bookkeeping
    assert structure("train.steps=100") != structure("train.steps=200")  # the budget: a warm-up's length
    assert structure() != structure("objective.kl_warmup_steps=10")  # the objective's schedule
    assert structure() != structure("train.learning_rate=0.01")  # the optimizer
    recipe = book.resolve("vae_mlp", registry, ["latent_dim=2"])
    assert program_structure(recipe, registry, "condition", 100) != program_structure(recipe, registry, "condition", 90)


def parameters(workdir, registry):
    return jax.tree.leaves(Run.load(workdir, registry).params)


def test_a_second_seed_reuses_the_first_ones_programs_and_trains_as_with_nothing_kept(
    tmp_path, book, registry, monkeypatch
):
    monkeypatch.setattr(programs, "_kept", collections.OrderedDict())
    train_tiny(book, registry, "vae_mlp", tmp_path / "seed0", "train.seed=0")
    kept = dict(programs._kept)
    assert {key[0] for key in kept} == {"train_step", "scanned_steps", "bound_metrics"}  # training, validation
    train_tiny(book, registry, "vae_mlp", tmp_path / "seed1", "train.seed=1")
    assert programs._kept.keys() == kept.keys() and all(programs._kept[k] is kept[k] for k in kept)

    monkeypatch.setattr(programs, "_kept", collections.OrderedDict())  # nothing kept: built for this run
    train_tiny(book, registry, "vae_mlp", tmp_path / "seed1_alone", "train.seed=1")
    for reused, alone in zip(parameters(tmp_path / "seed1", registry), parameters(tmp_path / "seed1_alone", registry)):
        np.testing.assert_array_equal(reused, alone)  # the seed is the step's argument, not the first run's
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(parameters(tmp_path / "seed0", registry), parameters(tmp_path / "seed1", registry))
    )
