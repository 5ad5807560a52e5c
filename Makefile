# Quick start: `make demo` (set up, then drive the guide's 1,000 tasks/min end to end), `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install broker lint bench

$(BIN)/rabbitscale: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/rabbitscale

broker:
	@scripts/ensure_broker.sh

demo: install broker
	$(BIN)/rabbitscale run sustained_tasks --duration 60s --instances 3

test: install broker
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .

bench: install broker
	$(BIN)/python bench/stack_ceiling.py
	$(BIN)/python bench/pacing.py
