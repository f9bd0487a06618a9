"""Likelihoods against scipy, conditions against the images they split, networks' refusals."""

import dataclasses

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

import zoo
from vae_zoo_plugins.base import conditions, conv, likelihoods, priors

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("jit", [False, True])
def test_bernoulli_log_prob_matches_scipy(jit):
    logits = RNG.normal(size=(3, 4, 4, 1, 1)).astype(np.float32)
    x = (RNG.uniform(size=(3, 4, 4, 1)) < 0.5).astype(np.float32)
    log_prob = lambda p, v: likelihoods.make_bernoulli()(p).log_prob(v)
    ours = (jax.jit(log_prob) if jit else log_prob)(logits, x)
    probs = 1 / (1 + np.exp(-logits[..., 0]))
    reference = stats.bernoulli(probs).logpmf(x).reshape(3, -1).sum(-1)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_gaussian_likelihoods_match_scipy(jit):
    loc = RNG.normal(size=(2, 6)).astype(np.float32)
    raw_scale = RNG.normal(size=(2, 6)).astype(np.float32)
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    cases = [
        (likelihoods.make_gaussian_identity(), loc[..., None], np.ones_like(loc)),
        (likelihoods.make_gaussian_fixed(scale=0.3), loc[..., None], np.full_like(loc, 0.3)),
        (
            likelihoods.make_gaussian_diagonal(min_scale=0.01),
            np.stack([loc, raw_scale], -1),
            np.log1p(np.exp(raw_scale)) + 0.01,
        ),
    ]
    for likelihood, params, scale in cases:
        log_prob = lambda p, v: likelihood(p).log_prob(v)  # noqa: B023  (called in this iteration)
        ours = (jax.jit(log_prob) if jit else log_prob)(params, x)
        reference = stats.norm(loc, scale).logpdf(x).sum(-1)
        np.testing.assert_allclose(ours, reference, rtol=1e-5)
        assert params.shape[-1] == likelihood.params_per_dim


def test_likelihood_options_are_checked():
    with pytest.raises(ValueError, match="scale must be positive"):
        likelihoods.make_gaussian_fixed(scale=0.0)


def test_quadrants_split_and_assemble_recover_the_image():
    images = jnp.asarray(RNG.uniform(size=(5, 8, 8, 1)), jnp.float32)
    for visible in ((0,), (2, 3), (0, 1, 2)):
        condition = conditions.make_visible_quadrants((8, 8, 1), visible=visible)
        x, c = condition.split(images, None)
        assert c.shape == (5, 16 * len(visible)) and x.shape == (5, 64 - 16 * len(visible))
        np.testing.assert_array_equal(condition.assemble(x, c), images)
    bottom_left = conditions.make_visible_quadrants((8, 8, 1), visible=(2,))
    _, c = bottom_left.split(images, None)
    np.testing.assert_array_equal(c, np.asarray(images[:, 4:, :4, 0]).reshape(5, -1))


def test_quadrants_refuse_bad_choices():
    with pytest.raises(ValueError, match="1 to 3 distinct quadrants"):
        conditions.make_visible_quadrants((8, 8, 1), visible=(0, 1, 2, 3))
    with pytest.raises(ValueError, match="height, width, channels"):
        conditions.make_visible_quadrants((64,), visible=(0,))


def test_onehot_label_parses_what_a_user_types(registry):
    dataset = registry.build("dataset", {"name": "digits"})
    condition = conditions.make_onehot_label((8, 8, 1), 10)
    c, labels = condition.parse("2026", dataset)
    assert labels == ["2", "0", "2", "6"]
    np.testing.assert_array_equal(np.argmax(c, -1), [2, 0, 2, 6])
    assert condition.parse("3, 7", dataset)[1] == ["3", "7"]
    for bad, message in (("", "empty condition"), ("12a", "unknown class '12a'")):
        with pytest.raises(zoo.ZooError, match=message):
            condition.parse(bad, dataset)


def test_class_names_of_several_words_are_one_class(registry):
    dataset = registry.build("dataset", {"name": "digits"})
    fashion = dataclasses.replace(
        dataset,
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    )
    condition = conditions.make_onehot_label((8, 8, 1), 10)
    assert condition.parse("Sneaker Ankle boot 0", fashion)[1] == ["Sneaker", "Ankle boot", "T-shirt/top"]
    assert condition.parse("ankle BOOT", fashion)[1] == ["Ankle boot"]
    assert condition.parse("Ankle", fashion)[1] == ["Ankle boot"]  # a unique beginning of a name (zoo.web.writing)
    with pytest.raises(zoo.ZooError, match="unknown class 'Anklet'"):
        condition.parse("Anklet", fashion)


def test_conv_decoder_reaches_any_size_by_cropping_the_centre():
    decoder = conv.make_conv_decoder(4, None, (7, 7, 1, 1), nnx.Rngs(0))  # 2x2 -> 8x8, cropped to 7x7
    assert decoder(jnp.zeros((2, 4)), None).shape == (2, 7, 7, 1, 1) and decoder.offset == (0, 0)
    assert conv.make_conv_decoder(4, None, (28, 28, 1, 1), nnx.Rngs(0)).start == (7, 7, 64)  # no crop needed
    with pytest.raises(ValueError, match="needs images of shape"):
        conv.make_conv_encoder((64,), None, 4, nnx.Rngs(0))


def test_conditional_prior_needs_a_condition():
    with pytest.raises(zoo.ModelBuildError, match="needs a condition"):
        priors.make_conditional_prior(4, None, nnx.Rngs(0))


def test_model_build_refuses_a_decoder_that_does_not_fit(registry, book):
    # The conv decoder cannot produce the flat hidden-pixel vector of quadrant completion.
    recipe = book.resolve("cvae_quadrants", registry, ["decoder={name: conv}"])
    from zoo.core.assembly import assemble

    with pytest.raises(zoo.ModelBuildError, match="decoder 'conv' could not be built: needs images of shape"):
        assemble(recipe, registry)


def test_model_build_names_both_components_and_shapes(registry):
    def make_wrong_decoder(latent_dim, output_shape, rngs):
        """A decoder that ignores output_shape."""

        class Wrong(nnx.Module):
            def __init__(self):
                self.out = nnx.Linear(latent_dim, 3, rngs=rngs)

            def __call__(self, z, c=None):
                return self.out(z)

        return Wrong()

    registry_with = zoo.Registry()
    for component in registry.list():
        registry_with.register(component.kind, component.name, component.factory, plugin=component.plugin)
    registry_with.register("decoder", "wrong", make_wrong_decoder, plugin="test")
    recipe = {
        "latent_dim": 2,
        "encoder": {"name": "mlp", "hidden": (4,)},
        "decoder": {"name": "wrong"},
        "prior": {"name": "standard_normal"},
        "likelihood": {"name": "gaussian_diagonal"},
    }
    with pytest.raises(zoo.ModelBuildError) as info:
        zoo.build_model(recipe, registry_with, x_shape=(8, 8, 1), c_shape=None, rngs=nnx.Rngs(0))
    assert str(info.value) == (
        "decoder 'wrong' outputs shape (2, 3) but likelihood 'gaussian_diagonal' needs (2, 8, 8, 1, 2) "
        "(batch, data shape (8, 8, 1), 2 parameter(s) per dimension)"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # Options with a range are refused by recipe validation, naming the key (tests/test_ranges.py);
        # the factories' own checks, for callers from Python, are asserted there too.
        (
            ["objective={name: iwae, num_samples: 0}"],
            "--set: vae_mlp.objective.num_samples: expected an int >= 1, got 0",
        ),
        (
            ["objective={name: hybrid, alpha: 1.5}"],
            "--set: vae_mlp.objective.alpha: expected a float in [0, 1], got 1.5",
        ),
        (["encoder.hidden=[0]"], "encoder 'mlp' could not be built: hidden sizes must be positive, got [0]"),
        (
            ["encoder={name: conv, channels: []}"],
            "encoder 'conv' could not be built: channels must list at least one size",
        ),
        (["dataset.validation_size=5000"], "digits: test_size 360 with validation_size 5000 leaves no training data"),
    ],
)
def test_factories_refuse_bad_options_by_name(registry, book, overrides, message):
    from zoo.core.assembly import assemble

    with pytest.raises(zoo.ZooError) as info:
        assemble(book.resolve("vae_mlp", registry, overrides), registry)
    assert message in str(info.value)


def test_train_section_refuses_negative_seed_and_nan_rate(registry, book):
    with pytest.raises(zoo.RecipeError, match="vae_mlp.train.seed: expected a number >= 0, got -1"):
        book.resolve("vae_mlp", registry, ["train.seed=-1"])
    with pytest.raises(zoo.RecipeError, match="vae_mlp.train.learning_rate: expected a positive number, got 'nan'"):
        book.resolve("vae_mlp", registry, ["train.learning_rate=nan"])


@pytest.mark.parametrize(
    "make", [lambda p: distrax.Bernoulli(logits=p[..., 0]), lambda p: distrax.Normal(p[..., 0], 0.3)]
)
def test_flat_events_are_distrax_independent(make):
    """The likelihoods' flat scoring is the same distribution as distrax.Independent over the image axes."""
    params = jax.random.normal(jax.random.key(0), (3, 4, 5, 1, 1))
    x = (jax.random.uniform(jax.random.key(1), (2, 3, 4, 5, 1)) > 0.5).astype(jnp.float32)  # sample axis, batch, image
    reference = distrax.Independent(make(params), reinterpreted_batch_ndims=3)
    flat = likelihoods.FlatEvents(make(params.reshape(3, 20, 1)), (4, 5, 1))
    assert flat.event_shape == reference.event_shape and flat.batch_shape == reference.batch_shape == (3,)
    np.testing.assert_allclose(flat.log_prob(x), reference.log_prob(x), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda v: flat.log_prob(v))(x[0]), reference.log_prob(x[0]), rtol=1e-6)
    np.testing.assert_allclose(flat.mean(), reference.mean(), rtol=1e-6)
    np.testing.assert_allclose(flat.mode(), reference.mode(), rtol=1e-6)
    assert flat.sample(seed=jax.random.key(2), sample_shape=(7,)).shape == (7, 3, 4, 5, 1)


def test_logit_bernoulli_is_distraxs_bernoulli():
    logits = jnp.array([-30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 30.0])
    for x in (jnp.zeros(7), jnp.ones(7), jnp.full(7, 0.3)):
        np.testing.assert_allclose(
            likelihoods.LogitBernoulli(logits=logits).log_prob(x),
            distrax.Bernoulli(logits=logits).log_prob(x),
            rtol=1e-6,
            atol=1e-6,
        )
