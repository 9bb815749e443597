# The local stack: moto + the Ocelot sandbox + the real handlers on loopback (docs/local-stack.md).
#
#   make local-up       start it in the background; endpoints in .local/stack.json
#   make local-status   is it running, and where
#   make local-down     stop it (and everything it started)
#   make demo           fresh stack, one batch by API + one by SQS, table of outcomes, stop
#   make demo SAM=1     the same, the functions served by sam local start-api / start-lambda
#                       (needs a Docker engine: `make docker-up`; docs/local-stack.md)
#   make integration    the integration tests (their own stacks on free ports)

LOCAL_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
LOCAL_STATE_DIR ?= $(LOCAL_ROOT)/.local
# Extra arguments, e.g. LOCAL_ARGS="--seed 3 --param OcelotMaxMessages=100"
LOCAL_ARGS ?=
DEMO_ARGS ?=
LOCAL_PYTHON := cd "$(LOCAL_ROOT)" && $(BIN)/python

.PHONY: local-up local-down local-status demo integration

local-up: install ## Start the local stack in the background (free loopback ports; .local/stack.json)
	$(LOCAL_PYTHON) -m tools.local.stack up --background --state-dir "$(LOCAL_STATE_DIR)" $(LOCAL_ARGS)

local-down: install ## Stop the local stack started by local-up
	$(LOCAL_PYTHON) -m tools.local.stack down --state-dir "$(LOCAL_STATE_DIR)"

local-status: install ## Show whether the local stack runs, and its endpoints
	@$(LOCAL_PYTHON) -m tools.local.stack status --state-dir "$(LOCAL_STATE_DIR)"

# SAM=1: the demo itself checks the engine (a clear error without one, no fallback), makes sure of
# the image and a fresh `sam build`, so the prerequisites stay the same as without it.
demo: install ## Send ~20 SMS through a local stack (API + SQS), check every outcome, stop it (SAM=1: via sam local)
	$(LOCAL_PYTHON) -m tools.demo --state-dir "$(LOCAL_STATE_DIR)/demo" $(if $(SAM),--sam) $(DEMO_ARGS)

integration: install ## Integration tests against local stacks (pytest -m integration)
	$(LOCAL_PYTHON) -m pytest tests/integration -m integration -q $(PYTEST_ARGS)
