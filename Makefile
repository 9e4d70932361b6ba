# One-command entry points. Each target sets up what is missing (a venv in .venv, the pinned
# packages) and is safe to repeat.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: reproduce test test-slow lint dvc-repro clean

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

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

clean:  ## remove every output of the study (keeps the venv)
	rm -rf data runs reports logs mlflow.db mlflow.db.lock mlartifacts .snakemake
