# Performance bench (docs/performance.md): not part of `make test`.
#
#   make bench        build, then measure cold start, the webhook and the applier by delivery size, the
#                     time from the webhook's 200 to the status (a local stack), the sender, size,
#                     memory and money; writes bench/results.json and docs/callback-throughput.png,
#                     prints the table, exits non-zero naming every missed goal. Talks to 127.0.0.1 only.
#   make bench-quick  the same with fewer samples (for working on the bench itself; not for numbers)

BENCH_VENV ?= .venv-bench
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-venv

bench-venv: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: tools/bench/requirements.txt
	@test -n "$(PYTHON313)" || { echo "python3.13 not found"; exit 1; }
	$(PYTHON313) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/bench/requirements.txt
	@touch $@

bench: build bench-venv ## Performance bench -> bench/results.json, docs/callback-throughput.png (exit 1: goal missed)
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

bench-quick: build bench-venv ## The bench with few samples (checks the machinery, numbers are rough)
	$(BIN)/python -m tools.bench --quick $(BENCH_ARGS)
