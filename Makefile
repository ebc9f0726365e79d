# ameli-grpc — `make run` serves the demo on the embedded defaults, `make test` runs everything.

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
BASELINE := protos/baseline/ameli-auth-v1.binpb

.PHONY: install install-runtime run test lint typecheck stubs check-stubs buf baseline bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalled when a pyproject changes, or when the venv lost its interpreter.
# The runtime only (what `make run` needs): the service and its client package.
$(RUNTIME_STAMP): $(PY) pyproject.toml clients/python/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e .
	touch $(RUNTIME_STAMP)

# With the development extras: test, lint, type and stub tools.
$(STAMP): $(PY) pyproject.toml clients/python/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e '.[dev,otel]'
	touch $(STAMP) $(RUNTIME_STAMP)

install-runtime: $(RUNTIME_STAMP)

install: $(STAMP)

## run: migrate, load the demo accounts, serve on 127.0.0.1:50051 (runtime packages only; metrics on 127.0.0.1:9464)
run: install-runtime
	$(BIN)/ameli-grpc migrate
	$(BIN)/ameli-grpc demo-data
	AMELI_METRICS_LISTEN=$${AMELI_METRICS_LISTEN-127.0.0.1:9464} $(BIN)/ameli-grpc serve

## test: generated code, contract, lint, types, then the whole pytest suite
test: install check-stubs buf lint typecheck
	$(PY) -m pytest

check-stubs: install
	$(PY) scripts/gen_protos.py --check

buf: install
	$(BIN)/buf lint
	$(BIN)/buf breaking --against $(BASELINE)

## lint: ruff, and the architecture's import contracts (pyproject's [tool.importlinter])
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

## typecheck: mypy --strict on ameli_grpc, tests/, scripts/ (see [tool.mypy]), then the client
typecheck: install
	$(BIN)/mypy
	cd clients/python && ../../$(BIN)/mypy

## stubs: regenerate the Python stubs after a change of protos/
stubs: install
	$(PY) scripts/gen_protos.py

## baseline: record the released contract that `buf breaking` compares against
baseline: install
	$(BIN)/buf build protos -o $(BASELINE)

## bench: throughput and latency of the main calls against a local server
bench: install
	$(PY) scripts/benchmark.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
