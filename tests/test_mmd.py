"""The unbiased MMD^2 estimator of InfoVAE and WAE-MMD: near 0 for two samples of one
distribution, and equal to the closed form for two Gaussians under the RBF kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_zoo_plugins.families.mmd import mmd_squared


def expected_rbf(mean_gap, covariance, scale):
    """E exp(-|x - y|^2 / C) for x - y ~ N(mean_gap, covariance)."""
    dim = len(mean_gap)
    return np.linalg.det(np.eye(dim) + 2.0 * covariance / scale) ** -0.5 * np.exp(
        -0.5 * mean_gap @ np.linalg.solve(covariance + scale / 2.0 * np.eye(dim), mean_gap)
    )


MEAN_X, MEAN_Y = np.array([0.0, 0.5]), np.array([0.8, -0.3])
COV_X, COV_Y = np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([[0.6, -0.2], [-0.2, 1.5]])


def samples(key, n, mean, covariance):
    return jax.random.multivariate_normal(
        key, jnp.asarray(mean, jnp.float32), jnp.asarray(covariance, jnp.float32), (n,)
    )


def replicated(statistic, n, m, same, replicates=2000):
    """The estimator over many independent small samples (n from X, m from Y, or from X when `same`)."""

    def one(key):
        kx, ky = jax.random.split(key)
        return statistic(samples(kx, n, MEAN_X, COV_X), samples(ky, m, *((MEAN_X, COV_X) if same else (MEAN_Y, COV_Y))))

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), replicates)), np.float64)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_unbiased_mmd_is_zero_on_average_for_one_distribution(kernel):
    values = replicated(lambda x, y: mmd_squared(x, y, kernel, 2.0), 8, 12, same=True)
    standard_error = values.std() / np.sqrt(len(values))
    assert abs(values.mean()) < 3 * standard_error
    # The biased (V-statistic) form would sit well above 0 at these sizes: the test can tell.
    assert values.std() > 0 and np.mean(values) < 0.25 * np.mean(np.abs(values))


def test_unbiased_mmd_equals_the_closed_form_for_two_gaussians_under_the_rbf_kernel():
    scale = 2.0
    exact = (
        expected_rbf(np.zeros(2), 2 * COV_X, scale)
        + expected_rbf(np.zeros(2), 2 * COV_Y, scale)
        - 2 * expected_rbf(MEAN_X - MEAN_Y, COV_X + COV_Y, scale)
    )
    assert exact > 0.1
    values = replicated(lambda x, y: mmd_squared(x, y, "rbf", scale), 6, 9, same=False)
    assert abs(values.mean() - exact) < 3 * values.std() / np.sqrt(len(values))  # unbiased even at 6 and 9 samples
    large = float(
        mmd_squared(
            samples(jax.random.key(1), 3000, MEAN_X, COV_X),
            samples(jax.random.key(2), 3000, MEAN_Y, COV_Y),
            "rbf",
            scale,
        )
    )
    assert large == pytest.approx(exact, abs=0.025)  # about 4 standard deviations of the estimate at 3000 samples


def test_mmd_objectives(book, registry):
    import zoo
    from zoo.core.assembly import assemble

    small = ["encoder.hidden=[16]", "decoder.hidden=[16]"]
    elbo_like = assemble(
        book.resolve("info_vae", registry, [*small, "objective.alpha=0.0", "objective.lambda_weight=1.0"]), registry
    )
    x = jnp.asarray(elbo_like.dataset.train.images[:16])
    loss, metrics = elbo_like.objective(elbo_like.model, zoo.Batch(x), jax.random.key(0))
    np.testing.assert_allclose(float(loss), -float(metrics["elbo"]), rtol=1e-5)  # alpha 0, lambda 1: the ELBO
    wae = assemble(book.resolve("wae_mmd", registry, small), registry)
    loss, metrics = wae.objective(wae.model, zoo.Batch(x), jax.random.key(0))
    np.testing.assert_allclose(float(loss), float(metrics["reconstruction_cost"] + 10.0 * metrics["mmd"]), rtol=1e-5)
    with pytest.raises(zoo.RecipeError, match="info_vae.objective.kernel: expected one of 'imq', 'rbf', got 'gauss'"):
        book.resolve("info_vae", registry, ["objective.kernel=gauss"])
    with pytest.raises(ValueError, match="kernel: unknown kernel 'gauss'; known: imq, rbf"):
        mmd_squared(x.reshape(16, -1), x.reshape(16, -1), "gauss")


def test_a_deterministic_wae_reports_what_its_untrained_scale_would_decide_as_not_applicable(book, registry):
    from flax import nnx

    from zoo.evaluation.evaluate import evaluate
    from zoo.core.assembly import assemble
    from zoo.core.interfaces import Split

    small = ["encoder.hidden=[16]", "decoder.hidden=[16]"]
    for deterministic, undefined in ((True, {"elbo", "kl", "log_likelihood"}), (False, set())):
        wae = assemble(
            book.resolve("wae_mmd", registry, [*small, f"objective.deterministic={deterministic}"]), registry
        )
        graphdef, params = nnx.split(wae.model)
        test = wae.dataset.test
        metrics = evaluate(
            graphdef,
            params,
            wae.condition,
            Split(test.images[:20], test.labels[:20]),
            jax.random.key(0),
            num_samples=5,
            objective=wae.objective,
        )
        assert {m for m in ("elbo", "kl", "log_likelihood") if metrics[m] is None} == undefined
        assert metrics["reconstruction_error"] is not None
        if deterministic:
            assert "never its scale" in metrics["log_likelihood_undefined"]
