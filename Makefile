# The two commands a new user needs (see README.md):
#   make run   set up, migrate the database, start the daemon and the dashboard
#   make test  set up (Python and system packages, services), run the tests
# and `make demo`, an offline run over bundled real kvmarm threads.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint demo venv venv-test system-deps services bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

system-deps:
	.ci/system-deps

services:
	.ci/services

run: venv
	VENV=$(VENV) contrib/run-local

test: venv-test system-deps services lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Types (mypy --strict over bot/, see pyproject.toml) and lint (ruff).
lint: venv-test
	$(BIN)/mypy
	$(BIN)/ruff check bot tests bench

demo: venv
	.ci/demo

bench: venv-test system-deps
	$(BIN)/python bench/regmodel.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/b4check.py
	$(BIN)/python bench/mutations.py

clean:
	rm -rf $(VENV) var build *.egg-info
