# The chaos run (docs/reliability.md): N messages through a local stack of its own, with
# Ocelot and DynamoDB misbehaving. Prints every check with its figure, writes bench/chaos-last.json,
# exits 1 when a check fails (2 when the run itself could not finish). Talks to 127.0.0.1 only, and
# stops everything it started. A CI-sized run (2,000 messages) is part of `make test`
# (tests/integration/test_chaos.py).
#
#   make chaos                 2,000 messages, as CI
#   make chaos N=20000         a bigger run by hand
#   make chaos CHAOS_ARGS="--seed 7 --out -"    other options: python -m tools.chaos --help

CHAOS_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
N ?= 2000
CHAOS_ARGS ?=

.PHONY: chaos

chaos: install ## Chaos run through the local stack (N=2000 as CI; N=20000 by hand) -> bench/chaos-last.json
	cd "$(CHAOS_ROOT)" && $(BIN)/python -m tools.chaos --messages $(N) $(CHAOS_ARGS)
