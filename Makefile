# Set-up needs only python3 (with venv) and make; everything else comes from PyPI,
# pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
# Two stamps: the main job needs the zoo and its dependencies only; the tests add the
# `test` extra (pytest, Selenium, hypothesis, ruff, mypy) and `perf` (PyTorch, the perf
# benchmark's reference), which `make run` never downloads.
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.installed-test

FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup setup-test data browser run lint test test-fast mutants clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e .
	touch $(INSTALLED)

$(TEST_INSTALLED): $(INSTALLED)
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[test,perf]"
	touch $(TEST_INSTALLED)

setup: $(INSTALLED)

setup-test: $(TEST_INSTALLED)

# Real Fashion-MNIST for the offline tests and benchmarks: Debian's package, when we
# may install it (root with apt-get); otherwise say how, and the test that needs it is skipped.
data:
	@if [ -d $(FASHION_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "note: Fashion-MNIST is not installed; run 'sudo apt-get install dataset-fashion-mnist' for the tests that train on it"; fi

# Headless Chromium and its driver for the browser tests of the page (tests/test_web.py):
# Debian's packages, installed when we may (root with apt-get); otherwise say how.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: Chromium is not installed; run 'sudo apt-get install chromium chromium-driver' for the browser tests"; fi

# The main job: the quick suite, a few variants x 3 seeds on the embedded digits
# (resumable: a second run reprints the finished results); it prints the table once
# and writes the report (zoo compare re-tabulates results.jsonl later).
run: setup
	$(VENV)/bin/zoo bench quick --out runs/bench/quick --report runs/bench/quick/report

# Lint and type checks first (configured in pyproject.toml), then the suite.
lint: setup-test
	$(VENV)/bin/ruff check zoo plugins tests benchmarks
	$(VENV)/bin/ruff format --check zoo plugins tests benchmarks
	$(VENV)/bin/mypy

# Two pytest-xdist workers, whole files each (a module's trained fixture is trained once); JAX's
# compilation cache is the session's own in each worker, so CI's times stay comparable.
test: setup-test data browser lint
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The fast tier, for every change: the same set-up and lint as `make test`, then every test not
# marked slow (the marker, registered in pyproject.toml, is on the wheel's build and install, the
# browser, faults that kill or signal a trainer, the full conformance of every component and
# variant, and longer training). A fast conformance check still builds every component and variant.
# Two workers (pytest-xdist, whole files each, so a module's trained fixture is trained once), and
# JAX's compilation cache kept in .cache/jax-tests between runs: a later run compiles only the
# programs a change touched (entries are keyed by the program and JAX's version).
TEST_JAX_CACHE ?= $(CURDIR)/.cache/jax-tests
test-fast: setup-test data browser lint
	ZOO_TEST_JAX_CACHE=$(TEST_JAX_CACHE) $(VENV)/bin/python -m pytest -m "not slow" -n 2 --dist loadfile --no-loadscope-reorder

# The mutation check of the core mathematics (benchmarks/mutants.py): each deliberate bug applied
# alone to a temporary copy of the working tree, its tests run, then the score. Not part of `make
# test` (16 to 40 minutes here); run it when the objectives, priors, importance sampling, early
# stopping or metrics change.
mutants: setup-test
	$(VENV)/bin/python benchmarks/mutants.py

clean:
	rm -rf $(VENV) runs
