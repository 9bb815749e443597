# sam local support: a Docker engine and a python3.13 Lambda image that work without
# access to Docker Hub / ECR (docs/sam-local.md).
#
#   make docker-up      start (installing if needed) a Docker engine
#   make lambda-image   make sure the image exists; its name goes to .local/lambda-image (and the
#                       alias samconfig.toml's `local` config env names, ocelot-sms/sam-invoke:python3.13,
#                       points at it)
#   make sam-test       sam validate --lint, then tests/sam_local: every events/ file through
#                       `sam local invoke`, the SQS partial failures, start-api end to end
#   make sam-env        .local/sam-env.json (the `local` config env's env_vars) for the stack of
#                       `make local-up LOCAL_ARGS="--functions none"`

# Paths from this fragment's own location, so `make -C` and includes from elsewhere work.
SAMLOCAL_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
SAMLOCAL_TOOLS := $(SAMLOCAL_ROOT)/tools/sam_local
SAMLOCAL_STATE_DIR := $(SAMLOCAL_ROOT)/.local
SAMLOCAL_IMAGE_FILE := $(SAMLOCAL_STATE_DIR)/lambda-image

.PHONY: docker-up lambda-image sam-test sam-env

docker-up: ## Start a Docker engine (installs docker.io as root if missing)
	bash "$(SAMLOCAL_TOOLS)/ensure-docker.sh"

# Written through a temp file and only on success, so a failed run never leaves an empty
# or partial name behind (make's /bin/sh has no pipefail).
lambda-image: docker-up ## Ensure the python3.13 Lambda image for sam local; name -> .local/lambda-image
	@mkdir -p "$(SAMLOCAL_STATE_DIR)"
	bash "$(SAMLOCAL_TOOLS)/ensure-image.sh" > "$(SAMLOCAL_IMAGE_FILE).tmp"
	@tail -n 1 "$(SAMLOCAL_IMAGE_FILE).tmp" > "$(SAMLOCAL_IMAGE_FILE)" && rm -f "$(SAMLOCAL_IMAGE_FILE).tmp"
	@echo "lambda image: $$(cat "$(SAMLOCAL_IMAGE_FILE)") (in $(SAMLOCAL_IMAGE_FILE))"

# `build` is the main Makefile's: plain `sam build` (both layers; sam local runs the x86_64 one). Each
# phase prints its own time.
sam-test: docker-up lambda-image build ## sam local: validate --lint, every events/ file invoked, SQS failures, start-api e2e
	@cd "$(SAMLOCAL_ROOT)" && TIMEFORMAT='sam-test: sam validate --lint %1Rs' && \
	  time $(BIN)/sam validate --lint --template template.yaml
	@cd "$(SAMLOCAL_ROOT)" && TIMEFORMAT='sam-test: pytest tests/sam_local %1Rs' && \
	  time $(BIN)/pytest tests/sam_local $(PYTEST_ARGS)

sam-env: install ## Write .local/sam-env.json (config env local's env_vars) from the local stack's stack.json
	cd "$(SAMLOCAL_ROOT)" && $(BIN)/python -m tools.sam_local.env_vars \
	  --stack "$(SAMLOCAL_STATE_DIR)/stack.json" --out "$(SAMLOCAL_STATE_DIR)/sam-env.json"
