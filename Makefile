# Quick start: `make demo` (set up, then drive the guide's 1,000 tasks/min end to end), `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest -q
# written by scripts/ensure_broker.sh when it started the compose file's broker
BROKER_ENV := .rabbitscale-broker.env
WITH_BROKER := set -a; [ -f $(BROKER_ENV) ] && . ./$(BROKER_ENV); set +a;
E2E := $(PYTEST) tests/e2e -m "not exclusive" -n 4 --dist loadgroup && \
       $(PYTEST) tests/e2e -m exclusive -n 3 --dist loadgroup

.PHONY: demo test test-unit test-broker test-e2e install setup broker lint docs bench bench-check

$(BIN)/rabbitscale: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/rabbitscale

# the tools some tests and benchmarks use (chromium, prometheus, wrk, nginx, iptables) and the broker
setup:
	@scripts/setup.sh

broker:
	@scripts/ensure_broker.sh

demo: install broker
	@$(WITH_BROKER) $(BIN)/rabbitscale run sustained_tasks --duration 60s --instances 3 --profile realistic

# every tier, cheapest first (docs/ci.md has what each takes)
test: install setup
	$(PYTEST) tests/unit -n 2
	@$(WITH_BROKER) $(PYTEST) tests/broker
	@$(WITH_BROKER) $(E2E)

# no broker, no network: the model, units, parsers, wire format, reports from fixtures
test-unit: install
	$(PYTEST) tests/unit -n 2

# the real broker, a vhost per test
test-broker: install setup
	@$(WITH_BROKER) $(PYTEST) tests/broker

# whole runs: scenarios, faults, clusters, backlog, validation; four at a time (each in a
# vhost or on nodes of its own; what measures capacity or latency one case at a time in an
# xdist group), then the exclusive three side by side: the 100,000 backlog on a fresh node,
# the nemesis on its own cluster, and the faults that change the shared broker for every client
test-e2e: install setup
	@$(WITH_BROKER) $(E2E)

# style, the layer contracts (pyproject's import-linter contracts), types, and the docs site
lint: install docs
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	@VULTURE=$(BIN)/vulture scripts/dead_code.sh

# the docs site (mkdocs-material) into site/, strictly: a broken link or page fails
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# the ratio benchmarks against their targets (issue 22), by hand: exits 1 when one misses
bench-check: install setup
	@$(WITH_BROKER) $(BIN)/python bench/check.py

bench: install broker
	$(BIN)/python bench/stack_ceiling.py
	$(BIN)/python bench/api_ingest.py
	$(BIN)/python bench/pacing.py
	$(BIN)/python bench/replicas.py
	$(BIN)/python bench/soak.py
