# One-command entry points. Each target sets up what is missing (a venv in .venv holding exactly the
# versions of requirements.lock) and is safe to repeat.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LOCK_VENV := .venv-lock
UV_VERSION := 0.13.8
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: reproduce test test-slow lint dvc-repro lock clean

reproduce: $(STAMP)  ## run the demo study: data -> train -> evaluate -> report
	$(BIN)/snakemake --cores all
	@$(BIN)/circle-repro summary --reports reports

test: $(STAMP)  ## the default test suite (slow end-to-end checks: make test-slow)
	$(BIN)/python -m pytest

test-slow: $(STAMP)  ## pipeline smoke tests: Snakemake and dvc repro on a tiny config
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)  ## ruff: the formatter and the linter, as CI runs them
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

dvc-repro: $(STAMP)  ## the same demo through DVC
	$(BIN)/dvc repro

# Every package at its locked version, checked against the lock's hashes; then the project itself,
# built by the locked setuptools (no build isolation, no other download).
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The lock: every package of requirements-dev.in (which includes requirements.in) and everything they pull
# in, each pinned with its hashes, resolved by uv from the sources pip is configured with (as pip does: the
# best match over every index). It keeps the versions already locked unless an .in file asks otherwise.
# Edit the .in files, then `make lock` and `make test`.
lock: requirements.in requirements-dev.in  ## regenerate requirements.lock from the requirements*.in files
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet uv==$(UV_VERSION); }
	$(LOCK_VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --index-strategy unsafe-best-match \
		--no-emit-find-links --no-emit-index-url --no-annotate --custom-compile-command "make lock" \
		$$($(PYTHON) tools/pip_sources.py) --output-file $(LOCK) requirements-dev.in

clean:  ## remove every output of the study (keeps the venv)
	rm -rf data runs reports logs mlflow.db mlflow.db.lock mlartifacts .snakemake
