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

# Lambda's /opt and /var/task are read-only: without .pyc files in the artifacts, every cold start
# compiles every module it imports (docs/performance.md). Hash-based pycs do not depend on the source
# timestamps surviving the zip; the never-imported parts of the dependencies are not compiled, and
# Powertools' Swagger UI assets (unused: no enable_swagger) are dropped, so the layer stays < 16 MB.
PRECOMPILE_EXCLUDE := pydantic/(v1|deprecated)/|pydantic/mypy\.py|urllib3/contrib/emscripten/|aws_lambda_powertools/utilities/(auth_alpha|feature_flags|circuit_breaker|kafka|data_masking|streaming|validation)/

build: install ## sam build (layer with BuildMethod python3.13), then precompiled bytecode
	$(BIN)/sam build --template template.yaml
	rm -rf .aws-sam/build/SharedLayer/python/aws_lambda_powertools/event_handler/openapi/swagger_ui
	$(BIN)/python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x '$(PRECOMPILE_EXCLUDE)' \
		.aws-sam/build/SharedLayer/python .aws-sam/build/*Function

clean: ## Remove build output and caches (keeps the venv)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

-include mk/*.mk
