"""Mutation check of the core mathematics (issue 32): do the tests notice a small wrong change?

Each mutant is one deliberate bug, an exact piece of text replaced in one file (a dropped
log K, a flipped sign, a comparison the wrong way), with the tests that concern that code.
The working tree is copied once to a temporary directory (the tracked files and the untracked
ones git does not ignore; with `--commit REV`, one commit's files); each mutant is applied
there alone, its tests run, and the file is put back. The working tree is never written. A mutant is killed when its tests fail, survives
when they pass. Before the mutants, every mutant's tests run once on the unmutated copy: they
must pass there, or a kill would mean nothing.

    make mutants                                        # every mutant, then the score
    .venv/bin/python benchmarks/mutants.py --list       # the mutants, one a line
    .venv/bin/python benchmarks/mutants.py --only iwae_mean_for_log_mean_exp --only kl_sign_flipped

A mutant whose text is no longer in its file (the code moved or changed) stops the run with
its name: the list is then out of date, and is fixed here. Not run in CI: run it when the core
mathematics changes. A run took 16 to 40 minutes on two cores shared with other jobs.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path
from typing import NamedTuple, Sequence

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 1800  # a mutant that makes its tests run this long (e.g. a loop that never ends) counts as killed


class Mutant(NamedTuple):
    """One bug: `old` (found exactly once in `path`) replaced by `new`; `tests` the pytest node ids
    (or files) that concern the mutated code."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


OBJECTIVES = "zoo/core/objectives.py"
MODEL = "zoo/core/model.py"
TRAINING_STEP = "zoo/training/step.py"
SCHEDULES = "tests/test_schedules_in_training.py"
WARMUP_IN_TRAINING = SCHEDULES + "::test_training_logs_the_warmup_weight_and_weights_the_loss_by_it"
IWAE_BOUND = "tests/test_iwae_bound.py"
FEATURES = "tests/test_training_features.py"
EARLY_STOPPING_TESTS = (FEATURES + "::test_early_stopping_update_on_a_scripted_curve",)
PRIORS = "tests/test_priors_hierarchy.py"
VAMPPRIOR_TESTS = (
    PRIORS + "::test_vampprior_density_is_the_log_mean_of_the_encoders_gaussians",
    PRIORS + "::test_vampprior_samples_follow_its_density",
    PRIORS + "::test_vampprior_with_one_pseudo_input_kl_converges_to_the_closed_form",
)

MUTANTS: tuple[Mutant, ...] = (
    # --- objectives ---
    Mutant(
        "iwae_drops_log_k",
        OBJECTIVES,
        "return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)",
        "return jax.nn.logsumexp(log_w, axis=0)",
        (IWAE_BOUND, "tests/test_objectives.py", "tests/test_math.py"),
    ),
    Mutant(
        "iwae_mean_for_log_mean_exp",
        OBJECTIVES,
        "return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)",
        "return jnp.mean(log_w, axis=0)",
        (IWAE_BOUND, "tests/test_objectives.py", "tests/test_math.py"),
    ),
    Mutant(
        "iwae_warmup_weight_ignored",
        OBJECTIVES,
        "warmed = log_mean_exp(log_px + weight * log_ratio)",
        "warmed = log_mean_exp(log_px + log_ratio)",
        (IWAE_BOUND, WARMUP_IN_TRAINING + "[iwae-steps]"),
    ),
    Mutant(
        "iwae_warmup_outside_the_log_mean_exp",
        OBJECTIVES,
        "warmed = log_mean_exp(log_px + weight * log_ratio)",
        "warmed = log_mean_exp(log_px) + weight * log_ratio.mean(axis=0)",
        (IWAE_BOUND, WARMUP_IN_TRAINING + "[iwae-steps]"),
    ),
    Mutant(
        "kl_sign_flipped",
        OBJECTIVES,
        "loss = -log_likelihood.mean() + beta * weight * kl_term(kl, free_bits)",
        "loss = -log_likelihood.mean() - beta * weight * kl_term(kl, free_bits)",
        ("tests/test_objectives.py", FEATURES + "::test_warmup_weights_the_kl_in_the_loss"),
    ),
    Mutant(
        "beta_ignored",
        OBJECTIVES,
        "loss = -log_likelihood.mean() + beta * weight * kl_term(kl, free_bits)",
        "loss = -log_likelihood.mean() + weight * kl_term(kl, free_bits)",
        ("tests/test_objectives.py",),
    ),
    Mutant(
        "elbo_warmup_weight_ignored",
        OBJECTIVES,
        "loss = -log_likelihood.mean() + beta * weight * kl_term(kl, free_bits)",
        "loss = -log_likelihood.mean() + beta * kl_term(kl, free_bits)",
        (WARMUP_IN_TRAINING + "[elbo-steps]", FEATURES + "::test_warmup_weights_the_kl_in_the_loss"),
    ),
    Mutant(
        "warmup_epochs_read_as_steps",
        OBJECTIVES,
        "steps, option = math.ceil(kl_warmup_epochs * steps_per_epoch)",
        "steps, option = math.ceil(kl_warmup_epochs)",
        (WARMUP_IN_TRAINING + "[elbo-epochs]",),
    ),
    Mutant(
        "free_bits_as_a_ceiling",
        OBJECTIVES,
        "jnp.maximum(mean, free_bits)",
        "jnp.minimum(mean, free_bits)",
        (FEATURES + "::test_free_bits_hold_the_kl_term",),
    ),
    Mutant(
        "hybrid_alpha_swapped",
        OBJECTIVES,
        "loss = -(alpha * warmed + (1.0 - alpha) * gsnn_value.mean())",
        "loss = -((1.0 - alpha) * warmed + alpha * gsnn_value.mean())",
        ("tests/test_objectives.py",),
    ),
    Mutant(
        "hybrid_warmup_ignored",
        OBJECTIVES,
        "warmed = log_likelihood.mean() - kl_weight_at(warmup, step) * kl_term(kl, free_bits)",
        "warmed = log_likelihood.mean() - kl_weight_at(warmup, None) * kl_term(kl, free_bits)",
        (WARMUP_IN_TRAINING + "[hybrid-steps]",),
    ),
    Mutant(
        "gsnn_samples_the_posterior",
        OBJECTIVES,
        "z = model.prior_distribution(batch.c, batch.x.shape[0]).sample(seed=rng)",
        "z = model.encode(batch.x, batch.c).sample(seed=rng)",
        ("tests/test_objectives.py",),
    ),
    # --- training: the step as the objective and the data see it ---
    Mutant(
        "train_step_without_step",
        TRAINING_STEP,
        "return objective(model, batch, rng, step=step) if schedules else objective(model, batch, rng)",
        "return objective(model, batch, rng)",
        (SCHEDULES,),
    ),
    Mutant(
        "scanned_steps_share_one_step_number",
        TRAINING_STEP,
        "return step_function(state, images, labels, chunk_indices, position, start + position, seed)",
        "return step_function(state, images, labels, chunk_indices, position, start, seed)",
        (SCHEDULES + "::test_the_scanned_loop_logs_the_mean_warmup_weight_of_its_steps",),
    ),
    Mutant(
        "binarization_with_a_fixed_key",
        TRAINING_STEP,
        "jax.random.bernoulli(pixel_rng, batch_images)",
        "jax.random.bernoulli(jax.random.key(0), batch_images)",
        ("tests/test_datasets.py::test_dynamic_binarization_draws_fresh_bits_every_batch",),
    ),
    # --- importance sampling and the KL ---
    Mutant(
        "log_likelihood_drops_log_k",
        MODEL,
        "return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)",
        "return jax.nn.logsumexp(log_w, axis=0)",
        ("tests/test_math.py",),
    ),
    Mutant(
        "log_likelihood_mean_for_log_mean_exp",
        MODEL,
        "return jax.nn.logsumexp(log_w, axis=0) - jnp.log(num_samples)",
        "return jnp.mean(log_w, axis=0)",
        ("tests/test_math.py",),
    ),
    Mutant(
        "log_ratio_flipped",
        MODEL,
        "log_ratio = prior.log_prob(z) - log_q",
        "log_ratio = log_q - prior.log_prob(z)",
        ("tests/test_math.py", IWAE_BOUND),
    ),
    Mutant(
        "monte_carlo_kl_flipped",
        "zoo/core/divergence.py",
        "return z, log_q - p.log_prob(z)",
        "return z, p.log_prob(z) - log_q",
        ("tests/test_monte_carlo_kl.py", *VAMPPRIOR_TESTS, "tests/test_math.py"),
    ),
    # --- priors ---
    Mutant(
        "vampprior_without_one_over_k",
        "plugins/families/mixture_priors.py",
        "return jax.nn.logsumexp(per_component, axis=-1) - math.log(self.num_components)",
        "return jax.nn.logsumexp(per_component, axis=-1)",
        (*VAMPPRIOR_TESTS, "tests/test_conformance.py::test_component_conforms[prior:vampprior]"),
    ),
    Mutant(
        "mixture_weights_not_normalised",
        "plugins/families/mixture_priors.py",
        "densities + jax.nn.log_softmax(logits)",
        "densities + logits",
        (
            PRIORS + "::test_mixture_prior_density_equals_scipy",
            "tests/test_conformance.py::test_component_conforms[prior:mixture]",
        ),
    ),
    Mutant(
        "conditional_prior_fed_zeros_for_c",
        "plugins/base/priors.py",
        "distribution = self.head(self.trunk(c.reshape((c.shape[0], -1))))",
        "distribution = self.head(self.trunk(jnp.zeros_like(c).reshape((c.shape[0], -1))))",
        (
            "tests/test_conformance.py::test_component_conforms[prior:conditional]",
            "tests/test_conformance_variants.py::test_every_variant_conforms[cvae_sohn]",
        ),
    ),
    # --- early stopping ---
    Mutant(
        "early_stopping_comparison_flipped",
        "zoo/training/early_stopping.py",
        "return value > best if higher_is_better else value < best",
        "return value < best if higher_is_better else value > best",
        EARLY_STOPPING_TESTS,
    ),
    Mutant(
        "patience_one_validation_late",
        "zoo/training/early_stopping.py",
        "watch.waited >= settings.patience",
        "watch.waited > settings.patience",
        EARLY_STOPPING_TESTS,
    ),
    Mutant(
        "grace_ignored",
        "zoo/training/early_stopping.py",
        "waited = 0 if seen <= settings.grace else watch.waited + 1",
        "waited = watch.waited + 1",
        EARLY_STOPPING_TESTS,
    ),
    # --- metrics ---
    Mutant(
        "mig_sorted_the_wrong_way",
        "zoo/evaluation/disentanglement.py",
        "top = np.sort(np.concatenate([column, [0.0]]))[::-1]",
        "top = np.sort(np.concatenate([column, [0.0]]))",
        ("tests/test_disentanglement.py",),
    ),
    Mutant(
        "mig_not_divided_by_the_factor_entropy",
        "zoo/evaluation/disentanglement.py",
        "gaps.append((top[0] - top[1]) / h)",
        "gaps.append(top[0] - top[1])",
        ("tests/test_disentanglement.py",),
    ),
    Mutant(
        "active_units_counted_the_wrong_way",
        "zoo/evaluation/evaluate.py",
        "np.var(posterior_means, axis=0) > ACTIVE_UNIT_THRESHOLD",
        "np.var(posterior_means, axis=0) < ACTIVE_UNIT_THRESHOLD",
        ("tests/test_active_units.py",),
    ),
)


def working_tree_files(repo: Path) -> list[str]:
    """The tracked files and the untracked ones git does not ignore (no .venv, no runs)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in listed.decode().split("\0") if name and (repo / name).is_file()]


def copy_working_tree(repo: Path, target: Path) -> None:
    for name in working_tree_files(repo):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, destination)


def copy_commit(repo: Path, commit: str, target: Path) -> None:
    """The files of one commit (`git archive`), for a working tree that is mid-merge or mid-edit."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo, check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")


def renamed_packages(copy: Path) -> dict[str, str]:
    """Packages installed under another name than their directory's (pyproject.toml's
    [tool.setuptools.package-dir], e.g. vae_zoo_plugins = "plugins")."""
    settings = tomllib.loads((copy / "pyproject.toml").read_text())
    package_dir = settings.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return {name: directory for name, directory in package_dir.items() if name}


def link_renamed_packages(copy: Path) -> None:
    """A link at the copy's root for each renamed package: the editable install maps that name to
    the working tree's directory, so without it the copy's tests would import the unmutated files."""
    for name, directory in renamed_packages(copy).items():
        if not (copy / name).exists():
            (copy / name).symlink_to(copy / directory, target_is_directory=True)


def test_environment(copy: Path) -> dict[str, str]:
    """The copy's packages first on the path, no bytecode written: a restored file is read again
    from source, never from a cached compile of its mutant (same size and second)."""
    return {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}


def check_imports_from(copy: Path) -> None:
    """The copy's zoo and plugins are the ones imported there, not the editable install's."""
    packages = ["zoo", *(renamed_packages(copy) or ["plugins"])]
    program = "import importlib; " + "; ".join(f"print(importlib.import_module({p!r}).__file__)" for p in packages)
    found = subprocess.run(
        [sys.executable, "-c", program],
        cwd=copy,
        env=test_environment(copy),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    outside = [path for path in found if not Path(path).resolve().is_relative_to(copy.resolve())]
    if outside:
        raise SystemExit(f"mutants: the copy imports {outside}, not its own files; the mutants would not be tested")


def run_tests(copy: Path, tests: Sequence[str]) -> tuple[str, float]:
    """("passed" | "failed" | "timeout" | "error: ...", seconds) of pytest on `tests` in the copy."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    began = time.perf_counter()
    try:
        result = subprocess.run(
            command, cwd=copy, env=test_environment(copy), capture_output=True, text=True, timeout=TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - began
    seconds = time.perf_counter() - began
    # pytest: 0 passed, 1 some failed; 2-5 interrupted, internal or usage error, nothing collected.
    if result.returncode in (0, 1):
        return ("passed" if result.returncode == 0 else "failed"), seconds
    tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
    return f"error (pytest exit {result.returncode}): {' | '.join(tail)}", seconds


def apply(copy: Path, mutant: Mutant) -> str:
    """Write the mutant into the copy; returns the original text to put back."""
    path = copy / mutant.path
    if not path.is_file():
        raise SystemExit(f"mutant {mutant.name}: {mutant.path} does not exist; the list is out of date")
    original = path.read_text()
    count = original.count(mutant.old)
    if count != 1:
        raise SystemExit(
            f"mutant {mutant.name}: its text is found {count} times in {mutant.path}, not once; the list is out of date"
        )
    path.write_text(original.replace(mutant.old, mutant.new))
    return original


def check_baseline(copy: Path, mutants: Sequence[Mutant]) -> None:
    """Every selected mutant's tests pass on the unmutated copy (one pytest run over their union)."""
    tests = list(dict.fromkeys(test for mutant in mutants for test in mutant.tests))
    outcome, seconds = run_tests(copy, tests)
    print(f"baseline: {len(tests)} test selections on the unmutated copy: {outcome} ({seconds:.0f} s)", flush=True)
    if outcome != "passed":
        raise SystemExit("mutants: the tests fail without a mutant; fix them first")


def run_mutants(copy: Path, mutants: Sequence[Mutant]) -> list[tuple[Mutant, str]]:
    """Each mutant alone in the copy, its tests, then the file put back: (mutant, outcome) each."""
    outcomes = []
    for number, mutant in enumerate(mutants, 1):
        original = apply(copy, mutant)
        try:
            outcome, seconds = run_tests(copy, mutant.tests)
        finally:
            (copy / mutant.path).write_text(original)
        verdict = {"failed": "killed", "passed": "SURVIVED", "timeout": "killed (timeout)"}.get(outcome, outcome)
        print(f"[{number:2d}/{len(mutants)}] {verdict:<16} {mutant.name} ({seconds:.0f} s)", flush=True)
        outcomes.append((mutant, verdict))
    return outcomes


def report(outcomes: Sequence[tuple[Mutant, str]]) -> int:
    """Print the score; the exit status is 1 when a mutant survived or its tests could not run."""
    killed = [m for m, verdict in outcomes if verdict.startswith("killed")]
    survived = [m.name for m, verdict in outcomes if verdict == "SURVIVED"]
    errors = [m.name for m, verdict in outcomes if verdict.startswith("error")]
    print(f"\nmutation score: {len(killed)}/{len(outcomes)} killed")
    if survived:
        print("survived: " + ", ".join(survived))
    if errors:
        print("tests could not run: " + ", ".join(errors))
    return 1 if survived or errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--only", action="append", metavar="NAME", help="run this mutant only (repeatable)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests without a mutant")
    parser.add_argument("--commit", metavar="REV", help="test this commit's files instead of the working tree")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:<40} {mutant.path}")
        return 0
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        raise SystemExit(f"mutants: unknown {unknown}; known: {', '.join(known)}")
    mutants = [known[name] for name in args.only] if args.only else list(MUTANTS)
    with tempfile.TemporaryDirectory(prefix="vae-zoo-mutants-") as directory:
        copy = Path(directory)
        if args.commit:
            copy_commit(REPO, args.commit, copy)
        else:
            copy_working_tree(REPO, copy)
        link_renamed_packages(copy)
        check_imports_from(copy)
        for mutant in mutants:  # every mutant's text is checked before any test runs
            (copy / mutant.path).write_text(apply(copy, mutant))
        if not args.no_baseline:
            check_baseline(copy, mutants)
        return report(run_mutants(copy, mutants))


if __name__ == "__main__":
    sys.exit(main())
