"""Samplers fitted after training (issue 29 part 2; zoo.evaluation.samplers, vae_zoo_plugins.samplers):
each fitted to the codes of a tiny trained run, checked against something independent of it: the
density of the training codes against scipy's standard normal and numpy's uniform and
per-position categoricals, the Gaussian mixture against scikit-learn's own density, the flow and
the second stage against the conformance suite's density check and a grid integral, the PixelCNN
summed over every code sequence; sampling through `Run.sample` and `zoo sample --sampler`, the
fit read back from the run's cache, and the runs a sampler does not suit refused in one line."""

from __future__ import annotations

import dataclasses
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.mixture import GaussianMixture

import zoo
from tests.conftest import first_party_registry, plugin_of
from zoo.cli.main import main
from zoo.core import plugin_manager
from zoo.core.data import evaluation_split
from zoo.evaluation import samplers
from zoo.testing import check_density

SMALL = {
    "encoder.hidden": [32],
    "decoder.hidden": [32],
    "latent_dim": 4,
    "train.batch_size": 32,
    "train.steps": 40,
    "train.log_every": 20,
    "train.checkpoint_every": 20,
    "train.validate_every": 20,
}
VQ = {**SMALL, "encoder.codebook_size": 8, "encoder.code_dim": 2}  # 2 positions of 8 codes
TINY = {**SMALL, "train.steps": 10, "train.checkpoint_every": 10, "train.validate_every": 10}

# Small fitting budgets: seconds each on one CPU.
OPTIONS = {
    "gmm_fitted": {"num_components": 3},
    "maf_fitted": {"layers": 2, "hidden": [16], "steps": 300},
    "two_stage": {"hidden": [32], "steps": 300},
    "pixelcnn_codes": {"channels": 16, "layers": 1, "steps": 300, "learning_rate": 0.01},
}
CONTINUOUS = ("gmm_fitted", "maf_fitted", "two_stage")


def train(variant, tmp_path_factory, overrides, registry=None):
    return zoo.train(
        variant, tmp_path_factory.mktemp(variant) / "run", overrides=overrides, progress=False, registry=registry
    )


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return train("vae_mlp", tmp_path_factory, SMALL)


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    return train("vq_vae", tmp_path_factory, VQ)


def training_images(run) -> np.ndarray:
    return evaluation_split(run.experiment.dataset, "train").images


def code_log_density(fitted_run, codes) -> np.ndarray:
    """The fitted prior's log density of each code (N, D), as the model sees it."""
    return np.asarray(fitted_run.model.prior_distribution(None, len(codes)).log_prob(jnp.asarray(codes)), np.float64)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_a_fitted_sampler_gives_the_training_codes_more_density_than_the_standard_normal(vae_run, name):
    codes = vae_run.encode(training_images(vae_run))  # the run's own API, not the sampler's helper
    fitted = vae_run.with_sampler(name, OPTIONS[name])
    standard_normal = scipy.stats.multivariate_normal(np.zeros(codes.shape[1])).logpdf(codes)
    assert code_log_density(fitted, codes).mean() >= standard_normal.mean()


def test_the_gaussian_mixture_is_scikit_learns_density(vae_run):
    codes = vae_run.encode(training_images(vae_run)).astype(np.float64)
    fitted = vae_run.with_sampler("gmm_fitted", OPTIONS["gmm_fitted"])
    reference = GaussianMixture(3, covariance_type="diag", reg_covar=1e-6, random_state=0).fit(codes)
    np.testing.assert_allclose(code_log_density(fitted, codes), reference.score_samples(codes), atol=2e-3, rtol=1e-4)


def uniform_and_frequencies(codes: np.ndarray, num_codes: int) -> tuple[float, np.ndarray]:
    """The uniform categorical's log probability of a code sequence, and each sequence's under
    an independent categorical per position at the (add-one smoothed) code frequencies, in numpy."""
    uniform = -codes.shape[1] * np.log(num_codes)
    counts = np.stack([np.bincount(column, minlength=num_codes) for column in codes.T])
    log_probs = np.log((counts + 1.0) / (len(codes) + num_codes))
    return uniform, log_probs[np.arange(codes.shape[1]), codes].sum(axis=1)


def vq_codes(run) -> np.ndarray:
    return np.asarray(run.model.encode(jnp.asarray(training_images(run))).codes)


def test_the_pixelcnn_gives_the_training_codes_more_probability_than_the_uniform_categorical(vq_run):
    codes = vq_codes(vq_run)
    fitted = vq_run.with_sampler("pixelcnn_codes", OPTIONS["pixelcnn_codes"])
    prior = fitted.model.prior_distribution(None, len(codes))
    uniform, frequencies = uniform_and_frequencies(codes, 8)
    pixelcnn = np.asarray(prior.code_log_prob(jnp.asarray(codes)), np.float64)
    assert pixelcnn.mean() >= uniform
    # It can express the independent per-position categorical; a small budget comes near it at least.
    assert pixelcnn.mean() >= frequencies.mean() - 0.1, (pixelcnn.mean(), frequencies.mean())
    # Its log_prob of the code vectors is that of the codes (the model's KL reads it).
    vectors = vq_run.encode(training_images(vq_run))
    np.testing.assert_allclose(np.asarray(prior.log_prob(jnp.asarray(vectors))), pixelcnn, rtol=1e-5, atol=1e-5)


def test_the_pixelcnn_sums_to_one_over_every_code_sequence_and_samples_as_it_scores(vq_run):
    fitted = vq_run.with_sampler("pixelcnn_codes", OPTIONS["pixelcnn_codes"])
    sequences = np.array(list(itertools.product(range(8), repeat=2)))  # every one of the 8^2
    prior = fitted.model.prior_distribution(None, 1)
    probabilities = np.exp(np.asarray(prior.code_log_prob(jnp.asarray(sequences)), np.float64))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)  # a code that saw its own position would not sum to 1
    draws = np.asarray(prior.sample(seed=jax.random.key(0), sample_shape=(20000,)))[:, 0]  # (n, 4) code vectors
    codebook = np.asarray(fitted.model.encoder.codebook[...])
    drawn = np.argmin(((draws.reshape(-1, 2, 1, 2) - codebook) ** 2).sum(-1), axis=-1)  # (n, 2) codes
    frequencies = np.bincount(drawn[:, 0] * 8 + drawn[:, 1], minlength=64) / len(drawn)
    assert 0.5 * np.abs(frequencies - probabilities).sum() < 0.03  # total variation


class CodesAsData:
    """A stand-in model whose posterior mean is its input: a sampler fitted to given codes."""

    def encode(self, x, c):
        return type("Posterior", (), {"mean": lambda self: x})()


def banana(count: int, seed: int = 0) -> np.ndarray:
    """2-D codes no Gaussian fits: u ~ N(0, 1), v = u^2 / 2 + N(0, 0.3^2), scaled down as a VAE's codes."""
    generator = np.random.default_rng(seed)
    u = generator.normal(size=count)
    return 0.5 * np.stack([u, 0.5 * u**2 + 0.3 * generator.normal(size=count)], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def banana_fits(registry):
    codes = banana(4000)
    fits = {}
    for name, options in (
        ("maf_fitted", {"hidden": [32], "steps": 1500}),
        ("two_stage", {"hidden": [64], "steps": 1500}),
    ):
        prior = registry.build("prior", {"name": name, **options}, latent_dim=2)
        prior.fit_after_training(CodesAsData(), jnp.asarray(codes), None)
        fits[name] = prior
    return codes, fits


@pytest.mark.parametrize("name", ["maf_fitted", "two_stage"])
def test_a_fitted_density_agrees_with_its_samples_after_a_real_fit(banana_fits, name):
    codes, fits = banana_fits
    distribution = fits[name](None, 2)
    check_density(distribution, f"{name} fitted to a banana")  # the conformance suite's own check
    standard_normal = scipy.stats.multivariate_normal(np.zeros(2)).logpdf(codes).mean()
    assert code_log_density_of(distribution, codes) > standard_normal + 0.5  # a real fit, not N(0, I)


def code_log_density_of(distribution, codes) -> float:
    return float(np.mean(np.asarray(distribution.log_prob(jnp.asarray(codes)[:, None]))))


def test_the_flow_integrates_to_one_on_a_grid(banana_fits):
    _, fits = banana_fits
    axis = np.linspace(-4.0, 4.0, 321)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 1, 2)
    density = np.exp(np.asarray(fits["maf_fitted"](None, 1).log_prob(jnp.asarray(grid, jnp.float32)), np.float64))
    assert density.sum() * (axis[1] - axis[0]) ** 2 == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_run_sample_draws_images_through_a_sampler(vae_run, name):
    images = vae_run.sample(6, sampler=name, sampler_options=OPTIONS[name], seed=1)
    assert images.shape == (6, 8, 8, 1) and np.all(np.isfinite(images))
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert not np.allclose(images, vae_run.sample(6, seed=1))  # not the run's own prior's samples


def test_run_sample_draws_a_vq_vaes_images_through_the_pixelcnn(vq_run):
    images = vq_run.sample(6, sampler="pixelcnn_codes", sampler_options=OPTIONS["pixelcnn_codes"])
    assert images.shape == (6, 8, 8, 1) and np.all(np.isfinite(images))
    assert repr(vq_run.with_sampler("pixelcnn_codes", OPTIONS["pixelcnn_codes"])).endswith("sampler='pixelcnn_codes')")


def test_zoo_sample_fits_a_sampler_once_and_reads_it_back_from_the_run(vae_run, tmp_path, monkeypatch, capsys):
    options = ["--set", "sampler.steps=50", "--set", "sampler.hidden=[8]"]
    out = tmp_path / "maf.png"
    assert main(["sample", str(vae_run.workdir), "--sampler", "maf_fitted", *options, "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and capsys.readouterr().out.strip() == str(out)
    cached = list((vae_run.workdir / samplers.SAMPLERS_DIR).glob("maf_fitted-step*.npz"))
    assert cached, "the fit is kept in RUN/samplers/"

    def refit(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(samplers, "fit_to_training_split", refit)
    again = tmp_path / "again.png"
    assert main(["sample", str(vae_run.workdir), "--sampler", "maf_fitted", *options, "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()  # the same fit, so the same samples
    with pytest.raises(AssertionError, match="fitted again"):  # other options: another fit, not the cached one
        main(["sample", str(vae_run.workdir), "--sampler", "maf_fitted", "--set", "sampler.steps=51"])


def test_zoo_sample_writes_the_samplers_grid_beside_the_runs_by_default(vq_run, capsys):
    options = [f"--set=sampler.{k}={v}" for k, v in OPTIONS["pixelcnn_codes"].items()]
    assert main(["sample", str(vq_run.workdir), "--sampler", "pixelcnn_codes", *options]) == 0
    out = vq_run.workdir / "samples_pixelcnn_codes.png"
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 0


# --- Bad input: one `zoo: error:` line each ------------------------------------------------------


@pytest.fixture(scope="module")
def unsuited_runs(tmp_path_factory, vae_run, vq_run):
    """The runs each sampler below does not suit: a VQ-VAE, a Gaussian VAE, a hyperspherical one, a CVAE."""
    return {
        "vq": vq_run,
        "vae": vae_run,
        "svae": train("svae", tmp_path_factory, TINY),
        "cvae": train("cvae_mlp", tmp_path_factory, TINY),
    }


@pytest.mark.parametrize(
    ("sampler", "run", "expected"),
    [
        *[
            (name, "vq", f"{name} fits a continuous latent, and the run's model has a discrete latent")
            for name in CONTINUOUS
        ],
        ("pixelcnn_codes", "vae", "whose model has a continuous latent (encoder 'mlp'): prior 'pixelcnn_codes' draws"),
        ("gmm_fitted", "svae", "gmm_fitted fits a continuous latent, and the run's model has a hyperspherical latent"),
        ("maf_fitted", "svae", "maf_fitted fits a continuous latent, and the run's model has a hyperspherical latent"),
        ("pixelcnn_codes", "svae", "whose model has a hyperspherical latent (encoder 'vmf_mlp')"),
        ("gmm_fitted", "cvae", "the run is conditional (cvae_mlp)"),
    ],
)
def test_a_sampler_asked_of_a_run_it_does_not_suit_is_refused_in_one_line(
    unsuited_runs, capsys, sampler, run, expected
):
    workdir = unsuited_runs[run].workdir
    assert main(["sample", str(workdir), "--sampler", sampler]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"zoo: error: sampler {sampler!r} does not suit run {workdir}") and err.count("\n") == 1
    assert expected in err and "Traceback" not in err
    assert not (workdir / f"samples_{sampler}.png").exists()


class Vanishing:
    """Whether the test dataset below has lost its training split."""

    gone = False


def make_vanishing_digits() -> zoo.Dataset:
    """The digits, whose training split can vanish after a run is trained on them (a third party's data)."""
    from vae_zoo_plugins.datasets.digits import make_digits

    dataset = make_digits()
    if Vanishing.gone:
        empty = zoo.Split(dataset.train.images[:0], dataset.train.labels[:0])
        dataset = dataclasses.replace(dataset, train=empty)
    return dataset


def test_a_sampler_fitted_on_a_run_with_no_training_split_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    registry = first_party_registry(plugin_of("vanishing", ("dataset", "vanishing_digits", make_vanishing_digits)))
    run = zoo.train(
        "vae_mlp",
        tmp_path / "run",
        overrides={**TINY, "dataset": {"name": "vanishing_digits"}},
        registry=registry,
        progress=False,
    )
    monkeypatch.setattr(plugin_manager, "_DEFAULT", registry)
    monkeypatch.setattr(Vanishing, "gone", True)
    capsys.readouterr()  # what training said
    assert main(["sample", str(run.workdir), "--sampler", "gmm_fitted"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"zoo: error: sampler 'gmm_fitted' is fitted to the training split of run {run.workdir}, and its dataset "
        "'digits' has no training split to fit it to\n"
    )


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["--sampler", "nosuch"],
            r"unknown sampler 'nosuch'; known: .*gmm_fitted, maf_fitted, pixelcnn_codes, two_stage$",
        ),
        (["--sampler", "standard_normal"], r"unknown sampler 'standard_normal'"),
        (
            ["--sampler", "maf_fitted", "--set", "sampler.steps=0"],
            r"--set: sampler.steps: expected an int >= 1, got 0$",
        ),
        (
            ["--sampler", "gmm_fitted", "--set", "sampler.steps=9"],
            r"sampler.steps: unknown option of sampler 'gmm_fitted'",
        ),
        (
            ["--set", "sampler.steps=9"],
            r"--set sampler.steps=9: zoo sample takes --set sampler.OPTION=VALUE with --sampler",
        ),
        (["--sampler", "maf_fitted", "--set", "train.steps=9"], r"--set train.steps=9: zoo sample takes --set sampler"),
    ],
)
def test_a_bad_sampler_or_option_is_refused_in_one_line_before_the_run_is_loaded(tmp_path, capsys, arguments, expected):
    assert main(["sample", str(tmp_path / "no_run"), *arguments]) == 2  # refused before the (missing) run is read
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and err.count("\n") == 1
    assert re.search(expected, err.strip()), err


def test_the_conformance_suite_reaches_every_sampler(registry):
    from tests.test_conformance import COMPONENTS

    names = set(samplers.sampler_names(registry))
    assert {"gmm_fitted", "maf_fitted", "two_stage", "pixelcnn_codes", "fitted_gmm", "fitted_codebook"} == names
    assert {("prior", name) for name in names} <= set(COMPONENTS)
