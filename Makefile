# Quick start: `make demo` (set up, then drive the guide's 1,000 tasks/min end to end), `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install broker lint bench

$(BIN)/rabbitscale: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/rabbitscale

broker:
	@scripts/ensure_broker.sh

demo: install broker
	$(BIN)/rabbitscale run sustained_tasks --duration 60s --instances 3 --profile realistic

test: install broker
	$(BIN)/pytest -q

# iteration: everything but the slow broker runs (fault runs, find-max, backlog, cluster)
test-fast: install broker
	$(BIN)/pytest -q -m "not slow"

# style, the layer contract (pyproject's import-linter layers) and types
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench: install broker
	$(BIN)/python bench/stack_ceiling.py
	$(BIN)/python bench/api_ingest.py
	$(BIN)/python bench/pacing.py
	$(BIN)/python bench/replicas.py
	$(BIN)/python bench/soak.py
