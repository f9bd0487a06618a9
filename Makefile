# Set-up needs only python3 (with venv) and make; everything else comes from PyPI,
# pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: setup run test clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(INSTALLED)

setup: $(INSTALLED)

# The main job: a short comparison of a few variants on the embedded digits.
run: setup
	$(VENV)/bin/python benchmarks/quick.py

test: setup
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) runs
