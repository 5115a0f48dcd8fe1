SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run stop test chaos demo lint format bench venv clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@scripts/system-deps.sh venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@touch $@

venv: $(BIN)/.installed

## Start PostgreSQL, Redis, migrations, the API and two workers; print the URLs.
run: venv
	@scripts/system-deps.sh run
	@scripts/stack.sh start

## Stop what `make run` started.
stop:
	@scripts/stack.sh stop

## Lint, then the whole suite on its own PostgreSQL and redis-server.
test: venv
	@scripts/system-deps.sh test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

## Every fault test (the short ones `make test` runs too, and the long ones) on a stack of
## its own: workers killed, Redis restarted empty and flushed, PostgreSQL crashed, restarted
## and stopped, while HTTP nodes run. Prints the time to recover after each fault.
chaos: venv
	@scripts/system-deps.sh test
	$(BIN)/python -m pytest -s -o addopts="" -ra tests/faults

## Submit the example workflows to the running stack and watch them finish.
demo: venv
	$(BIN)/python scripts/demo.py

## The benchmark suite on its own API and workers (against the local stack's PostgreSQL and
## Redis): a table, the goals, then `BENCH <name> <value> <unit>` lines. BENCH_ARGS=--quick checks the harness.
bench: venv
	@scripts/system-deps.sh bench
	@scripts/stack.sh start >/dev/null
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: stop
	rm -rf .data $(VENV)
