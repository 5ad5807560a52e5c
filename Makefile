# Quick start: `make demo` (set up, run the stack and the guide's load end to end), `make test`.
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
	$(BIN)/rabbitscale stack --instances 3 --demo 30s

test: install broker
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .

bench: install broker
	$(BIN)/python bench/stack_ceiling.py
