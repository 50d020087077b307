# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit install services openapi bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is needed (python3.11 or python3 on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	@touch $(STAMP)

install: $(STAMP)

## Run TME in one process with simulated machines: http://localhost:8000
demo: $(STAMP)
	$(BIN)/tme demo

## Lint, type-check and run the whole test suite (CI runs exactly this): in
## TEST_WORKERS processes (pytest-xdist; a test file stays in one process), then the
## tests that need a process of their own
TEST_WORKERS ?= 2
test: $(STAMP) lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not own_process"
	$(BIN)/pytest -m own_process

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python scripts/typecheck.py

unit: $(STAMP)
	$(BIN)/pytest tests/unit

## Start RabbitMQ, Mosquitto and PostgreSQL on this machine if they are down
services:
	scripts/start-services.sh

openapi: $(STAMP)
	$(BIN)/tme openapi > docs/openapi.json

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
