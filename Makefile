# ocelot-sms: every target installs what it needs first, so a fresh clone needs only `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
CHECKOV_VENV ?= .venv-checkov
# Python 3.13 matches the Lambda runtime; on this machine kind it comes from pyenv.
PYTHON313 ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
# The venv's bin first, so `sam build` finds python3.13 for runtime python3.13.
export PATH := $(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
PYTEST_ARGS ?=

.PHONY: help install lint format unit test build clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create the venv (python3.13) and install the pinned dependencies

$(VENV)/.installed: requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (pyenv install 3.13.0, or put python3.13 on PATH)"; exit 1; }
	$(PYTHON313) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --editable .
	@touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@test -n "$(PYTHON313)" || { echo "python3.13 not found"; exit 1; }
	$(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

lint: install $(CHECKOV_VENV)/.installed ## ruff, mypy, cfn-lint (serverless rules), sam validate --lint, checkov
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/shared functions tests tools cli
	$(BIN)/cfn-lint template.yaml -a cfn_lint_serverless.rules
	$(BIN)/sam validate --lint --template template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation serverless --compact --quiet --skip-download

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two workers: the unit tests are CPU-bound and this machine kind has two cores.
unit: install ## Unit tests (no network) with the coverage gate
	$(BIN)/pytest tests/unit -n 2 --cov --cov-report=term $(PYTEST_ARGS)

# The local stacks and sam local run in processes of their own (nothing for coverage to see), and
# share ports and the build directory: one worker.
test: lint unit ## Everything CI runs: lint, the unit tests with the coverage gate, the stack suites
	$(BIN)/pytest tests/integration tests/sam_local $(PYTEST_ARGS)

# Plain `sam build`: the layers (one per architecture) and the functions are built by their own
# Makefiles (layers/shared/Makefile, functions/Makefile: precompiled, trimmed), so `sam build`,
# `sam sync` and `sam pipeline` ship exactly what this target builds.
build: install ## sam build: the shared layer (arm64 and x86_64) and the functions, precompiled
	$(BIN)/sam build

clean: ## Remove build output and caches (keeps the venv)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

-include mk/*.mk
