# The two commands a new user needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 7071
DATA_DIR ?= .local

.PHONY: run test lint bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.installed
	$(PY) -m core.local serve --port $(PORT) --data-dir $(DATA_DIR) --demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(VENV)/.installed node_modules/.installed lint
	$(VENV)/bin/pytest

bench: $(VENV)/.installed
	$(PY) -m benchmarks.bus_throughput

clean:
	rm -rf $(VENV) node_modules $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
