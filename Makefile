# ClassroomSync developer commands. The README names two: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv up down status clean distclean lint fmt test test-unit demo bench image

venv: $(STAMP)

# Reinstall when the dependency list or the pins change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## up: start real Kafka 4 (KRaft) and redis-server, create topics, migrate the chDB usage tables
up: venv
	$(BIN)/csync stack up
	$(BIN)/csync topics create --alter
	$(BIN)/csync clickhouse migrate

## down: stop what `make up` started; data stays
down:
	@if [ -x $(BIN)/csync ]; then $(BIN)/csync stack down; else echo "nothing to stop (no venv)"; fi

status: venv
	@$(BIN)/csync stack status

## clean: stop and remove local data (keeps the venv and the Kafka jar cache)
clean: down
	rm -rf .local/kafka/data .local/kafka/logs .local/kafka/server.properties .local/redis .local/chdb .local/stack.json

distclean: clean
	rm -rf .local $(VENV)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## test: lint, then every test against services the session starts on free ports (and stops)
test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

## test-faults: only the fault-injection scenarios (kill -9, outages, slow sink, bad input, broker and Redis failover)
.PHONY: test-faults
test-faults: venv
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

## demo: the whole pipeline on the local stack, a live dashboard, then demo-report/index.html
## (DEMO_MINUTES=3 by default; Ctrl-C stops everything it started)
demo: venv
	$(BIN)/python -m demo

## bench: every benchmark of bench/ against its own stack; table in bench/results/latest.md
bench: venv
	$(BIN)/python bench/run_all.py

## image: build the container image localhost/classroomsync:<version> with buildah (no Docker, no registry:
## a Debian bookworm base made by mmdebstrap, cached with the dependency wheels under .local/image)
image: venv
	PYTHON=$(abspath $(BIN)/python) deploy/image/build.sh
