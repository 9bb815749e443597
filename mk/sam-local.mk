# sam local support: a Docker engine and a python3.13 Lambda image that work without
# access to Docker Hub / ECR (see tools/sam_local/README.md).
#
#   make docker-up      start (installing if needed) a Docker engine
#   make lambda-image   make sure the image exists; its name goes to .local/lambda-image,
#                       for `sam local invoke --invoke-image "$(cat .local/lambda-image)"
#                       --skip-pull-image --docker-network host`

# Paths from this fragment's own location, so `make -C` and includes from elsewhere work.
SAMLOCAL_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
SAMLOCAL_TOOLS := $(SAMLOCAL_ROOT)/tools/sam_local
SAMLOCAL_STATE_DIR := $(SAMLOCAL_ROOT)/.local
SAMLOCAL_IMAGE_FILE := $(SAMLOCAL_STATE_DIR)/lambda-image

.PHONY: docker-up lambda-image

docker-up: ## Start a Docker engine (installs docker.io as root if missing)
	bash "$(SAMLOCAL_TOOLS)/ensure-docker.sh"

# Written through a temp file and only on success, so a failed run never leaves an empty
# or partial name behind (make's /bin/sh has no pipefail).
lambda-image: docker-up ## Ensure the python3.13 Lambda image for sam local; name -> .local/lambda-image
	@mkdir -p "$(SAMLOCAL_STATE_DIR)"
	bash "$(SAMLOCAL_TOOLS)/ensure-image.sh" > "$(SAMLOCAL_IMAGE_FILE).tmp"
	@tail -n 1 "$(SAMLOCAL_IMAGE_FILE).tmp" > "$(SAMLOCAL_IMAGE_FILE)" && rm -f "$(SAMLOCAL_IMAGE_FILE).tmp"
	@echo "lambda image: $$(cat "$(SAMLOCAL_IMAGE_FILE)") (in $(SAMLOCAL_IMAGE_FILE))"
