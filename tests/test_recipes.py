"""Recipe files, inheritance, overrides, and the messages for every kind of mistake."""

import textwrap

import pytest

import zoo
from zoo.training.experiment import train_and_evaluate
from zoo.core.recipes import RecipeBook, dump

GOOD = """
base_vae:
  dataset: {name: digits}
  latent_dim: 4
  encoder: {name: mlp, hidden: [16]}
  decoder: {name: mlp, hidden: [16]}
  prior: {name: standard_normal}
  likelihood: {name: bernoulli}
  objective: {name: elbo}
"""


def write(tmp_path, text, name="registry.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, registry, text, variant, overrides=()):
    path = write(tmp_path, text)
    with pytest.raises(zoo.RecipeError) as info:
        RecipeBook([path]).resolve(variant, registry, overrides)
    return str(info.value).replace(str(tmp_path) + "/", "")


def test_every_shipped_variant_resolves(book, registry):
    required = {"vae_mlp", "vae_conv", "cvae_mlp", "cvae_sohn", "beta_vae_mlp", "iwae_mlp"}
    assert required <= set(book.names())
    for name in book.names():
        recipe = book.resolve(name, registry)
        assert recipe["variant"] == name


def test_wrong_type_names_file_recipe_and_key_path(tmp_path, registry, book):
    text = zoo.default_registry_path().read_text()
    text = text.replace(
        "prior: {name: conditional, hidden: [256], activation: relu}\n  objective: {name: hybrid",
        "prior: {name: conditional, hidden: big, activation: relu}\n  objective: {name: hybrid",
    )
    assert "hidden: big" in text
    message = error_of(tmp_path, registry, text, "cvae_sohn")
    assert message == "registry.yaml: cvae_sohn.prior.hidden: expected a list of ints, got 'big'"


def test_unknown_key_missing_field_and_unknown_component(tmp_path, registry):
    assert error_of(tmp_path, registry, GOOD + "  optimiser: adam\n", "base_vae") == (
        "registry.yaml: base_vae.optimiser: unknown key 'optimiser'; known: base, condition, dataset, decoder, "
        "description, encoder, latent_dim, likelihood, objective, prior, train"
    )
    missing = GOOD.replace("  objective: {name: elbo}\n", "")
    assert error_of(tmp_path, registry, missing, "base_vae").startswith("registry.yaml: base_vae.objective: missing")
    typo = GOOD.replace("{name: bernoulli}", "{name: bernouli}")
    assert error_of(tmp_path, registry, typo, "base_vae") == (
        "registry.yaml: base_vae.likelihood.name: unknown likelihood 'bernouli' (did you mean 'bernoulli'?); "
        "known: bernoulli, continuous_bernoulli, discretized_logistic_mixture, gaussian_diagonal, gaussian_fixed, "
        "gaussian_identity"
    )
    option = GOOD.replace("hidden: [16]}\n  decoder", "hiden: [16]}\n  decoder")
    assert error_of(tmp_path, registry, option, "base_vae") == (
        "registry.yaml: base_vae.encoder.hiden: unknown option of encoder 'mlp' (did you mean 'hidden'?); options: hidden, activation, gated, init, log_variance_bounds"
    )


def test_bad_yaml_names_file_and_line(tmp_path, registry):
    message = error_of(tmp_path, registry, GOOD + "  train: {steps: [1, 2}\n", "base_vae")
    assert message.startswith("registry.yaml: invalid YAML at line 10")


def test_train_section_is_checked(tmp_path, registry):
    assert error_of(tmp_path, registry, GOOD + "  train: {steps: many}\n", "base_vae") == (
        "registry.yaml: base_vae.train.steps: expected an int, got 'many'"
    )
    assert error_of(tmp_path, registry, GOOD + "  train: {batch_size: 0}\n", "base_vae") == (
        "registry.yaml: base_vae.train.batch_size: expected a positive number, got 0"
    )


def test_base_inherits_and_overrides(tmp_path, registry):
    path = write(
        tmp_path,
        GOOD
        + "child:\n  base: base_vae\n  encoder: {hidden: [8, 8]}\n  prior: {name: conditional}\n  condition: {name: onehot_label}\n",
    )
    recipe = RecipeBook([path]).resolve("child", registry)
    assert recipe["encoder"] == {
        "name": "mlp",
        "hidden": (8, 8),
        "activation": "relu",
        "gated": False,
        "init": "lecun",
        "log_variance_bounds": None,
    }
    assert recipe["prior"] == {"name": "conditional", "hidden": (256,), "activation": "relu", "fixed_scale": None}


LAYERED = (
    GOOD
    + """
by_epochs:
  base: base_vae
  train: {epochs: 4, validate_every: 10, early_stopping: {patience: 3}}
  objective: {name: elbo, kl_warmup_epochs: 1}
by_steps:
  base: by_epochs
  train: {steps: 500}
  objective: {kl_warmup_steps: 50}
scheduled:
  base: by_steps
  train: {schedule: {name: warmup_cosine_decay, warmup_steps: 10, peak_value: 0.01, decay_steps: 100}}
"""
)


def test_a_layer_that_gives_one_of_two_alternatives_drops_the_other(tmp_path, registry):
    """A recipe, the one it inherits from and --set are layers: the budget in steps or in epochs,
    a KL warm-up in steps or in epochs, the learning rate or the schedule's own, is the one the
    highest layer gives (one layer giving both is refused: tests/test_bad_inputs.py)."""
    book = RecipeBook([write(tmp_path, LAYERED)])
    by_epochs = book.resolve("by_epochs", registry)
    assert (by_epochs["train"]["epochs"], by_epochs["objective"]["kl_warmup_epochs"]) == (4.0, 1.0)
    by_steps = book.resolve("by_steps", registry)  # its base counts epochs
    assert (by_steps["train"]["steps"], by_steps["train"]["epochs"]) == (500, None)
    assert (by_steps["objective"]["kl_warmup_steps"], by_steps["objective"]["kl_warmup_epochs"]) == (50, 0.0)
    cut = book.resolve("by_epochs", registry, ["train.steps=300", "objective.kl_warmup_steps=20"])
    assert (cut["train"]["steps"], cut["train"]["epochs"], cut["objective"]["kl_warmup_epochs"]) == (300, None, 0.0)
    assert book.resolve("by_steps", registry, ["train.epochs=2"])["train"]["epochs"] == 2.0
    scheduled = book.resolve("scheduled", registry)["train"]
    assert (scheduled["schedule"]["peak_value"], scheduled["learning_rate"]) == (0.01, 0.001)
    rate = book.resolve("scheduled", registry, ["train.learning_rate=0.5"])["train"]  # fills peak_value now
    assert "peak_value" not in rate["schedule"] and rate["learning_rate"] == 0.5


def test_settings_a_budget_given_above_them_cuts_short_are_said_at_the_start(tmp_path, registry, capsys):
    """Early stopping that a shorter budget from above (--set, a suite's budget) leaves unable to
    stop the run is no refusal (that is the point of a short budget): training says so."""
    book = RecipeBook([write(tmp_path, LAYERED)])
    recipe = book.resolve(
        "by_epochs", registry, ["train.epochs=1", "train.batch_size=256", "objective.kl_warmup_epochs=0"]
    )
    train_and_evaluate(recipe, tmp_path / "run", registry, progress=False)
    err = capsys.readouterr().err
    assert (
        "zoo: train.early_stopping cannot stop this run, which trains its whole budget (keeping the best "
        "checkpoint): patience 3 needs 4 validations to stop a run, and validating every 10 steps "
        "(train.validate_every) leaves 1 in the budget of 1 epochs (train.epochs, 4 steps)" in err
    ), err


def test_circular_base_is_refused(tmp_path, registry):
    text = "a:\n  base: b\nb:\n  base: a\n"
    assert error_of(tmp_path, registry, text, "a") == "registry.yaml: a.base: circular inheritance a -> b -> a"


def test_user_file_adds_and_overrides_variants(tmp_path, registry):
    shipped = write(tmp_path, GOOD)
    mine = write(
        tmp_path,
        "base_vae:\n  dataset: {name: digits}\n  latent_dim: 2\n  encoder: mlp\n  decoder: mlp\n  prior: standard_normal\n  likelihood: bernoulli\n  objective: elbo\nmine:\n  base: base_vae\n  latent_dim: 3\n",
        "mine.yaml",
    )
    book = RecipeBook([shipped, mine])
    assert book.resolve("base_vae", registry)["latent_dim"] == 2
    assert book.resolve("mine", registry)["latent_dim"] == 3
    assert book.source("mine").endswith("mine.yaml")


def test_set_overrides_one_field_and_is_blamed_for_its_errors(tmp_path, registry):
    path = write(tmp_path, GOOD)
    recipe = RecipeBook([path]).resolve(
        "base_vae", registry, ["train.steps=7", "encoder.hidden=[3, 4]", "train.learning_rate=1e-4"]
    )
    assert recipe["train"]["steps"] == 7 and recipe["encoder"]["hidden"] == (3, 4)
    assert recipe["train"]["learning_rate"] == pytest.approx(1e-4)
    assert error_of(tmp_path, registry, GOOD, "base_vae", ["encoder.hidden=big"]) == (
        "--set: base_vae.encoder.hidden: expected a list of ints, got 'big'"
    )
    assert (
        error_of(tmp_path, registry, GOOD, "base_vae", ["encoder.hidden"])
        == "--set 'encoder.hidden': expected key.path=value"
    )


def test_unknown_variant_lists_known(tmp_path, registry):
    path = write(tmp_path, GOOD)
    with pytest.raises(
        zoo.UnknownComponentError, match="unknown variant 'base_vea' \\(did you mean 'base_vae'\\?\\); known: base_vae"
    ):
        RecipeBook([path]).resolve("base_vea", registry)


def test_resolved_recipe_round_trips_through_yaml(book, registry, tmp_path):
    import yaml

    recipe = book.resolve("cvae_sohn", registry)
    plain = yaml.safe_load(dump(recipe))
    name = plain.pop("variant")
    assert zoo.core.recipes.validate(plain, registry, name=name, source="x") == recipe


def test_the_fast_yaml_reader_reads_what_pyyamls_own_reads_and_words_errors_as_it_does():
    """load_yaml uses libyaml where PyYAML has it; the shipped recipes and a saved run's recipe
    read the same as with yaml.safe_load, and a malformed file gets the pure-Python parser's message."""
    import yaml

    from zoo.core.recipes import load_yaml

    shipped = zoo.default_registry_path().read_text(encoding="utf-8")
    assert load_yaml(shipped) == yaml.safe_load(shipped)
    saved = dump(RecipeBook([zoo.default_registry_path()]).raw("cvae_sohn"))
    assert load_yaml(saved) == yaml.safe_load(saved)
    bad = "a: [1, 2\nb: 3\n"
    with pytest.raises(yaml.YAMLError) as ours:
        load_yaml(bad)
    with pytest.raises(yaml.YAMLError) as theirs:
        yaml.safe_load(bad)
    assert str(ours.value) == str(theirs.value)
