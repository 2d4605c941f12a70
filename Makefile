# The front door. Every target calls a `python -m` entry point that also works on its own.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS ?= runs
MODEL ?=
comma := ,
MODEL_FLAGS := $(foreach m,$(subst $(comma), ,$(MODEL)),--model $(m))

.DEFAULT_GOAL := all
.PHONY: install all train test test-gpu lint clean

# Idempotent: the stamp is newer than pyproject.toml once everything is installed.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -e ".[train,dev]"
	touch $@

all: install
	$(PY) -m pipeline all --runs-dir $(RUNS) $(MODEL_FLAGS)

train: install
	$(PY) -m pipeline train --runs-dir $(RUNS) $(MODEL_FLAGS)

test: install
	$(PY) -m pytest -q

test-gpu: install
	$(PY) -m pytest -q -m cuda

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(RUNS) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
