# ameli-grpc — `make run` serves the demo on the embedded defaults, `make test` runs everything.

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
PORTAL_STAMP := $(VENV)/.portal-stamp
BASELINE := protos/baseline/ameli-auth-v1.binpb

# The client package's floors (clients/python/pyproject.toml), which follow from the
# stub generator pinned in scripts/gen_protos.py (STUB_TOOLS, run from .venv-stubs).
# `make test-floor` runs the client's tests in .venv-floor on exactly these versions:
# the client, its floors, and the test tools, without the server package's dependencies.
FLOOR_VENV  := .venv-floor
FLOOR_PINS  := grpcio==1.72.1 protobuf==6.30.0 grpcio-status==1.72.1
FLOOR_TOOLS := pytest pytest-asyncio pytest-timeout hypothesis babel python-stdnum
FLOOR_STAMP := $(FLOOR_VENV)/.floor-stamp
# The client's tests: test_contract.py against its scripted in-process servicer, minus
# the contract tooling (buf, stub regeneration) that the main venv runs.
FLOOR_TESTS := tests/contract/test_contract.py -k "not buf and not regenerating_the_stubs"

.PHONY: install install-runtime run demo browser screenshots test test-floor lint typecheck stubs check-stubs buf baseline bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalled when a pyproject changes, or when the venv lost its interpreter.
# The runtime only (what `make run` needs): the service and its client package.
$(RUNTIME_STAMP): $(PY) pyproject.toml clients/python/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e .
	touch $(RUNTIME_STAMP)

# With the development extras: test, lint, type and stub tools, and the reference portal
# (examples/portal, its own package), which tests/portal drives in a browser.
$(STAMP): $(PY) pyproject.toml clients/python/pyproject.toml examples/portal/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e '.[dev,otel]' -e examples/portal
	touch $(STAMP) $(RUNTIME_STAMP) $(PORTAL_STAMP)

# The runtime and the reference portal (what `make demo` needs).
$(PORTAL_STAMP): $(RUNTIME_STAMP) examples/portal/pyproject.toml
	$(PY) -m pip install --quiet -e clients/python -e examples/portal
	touch $(PORTAL_STAMP)

install-runtime: $(RUNTIME_STAMP)

install: $(STAMP)

## run: migrate, load the demo accounts, serve on 127.0.0.1:50051 (runtime packages only; metrics on 127.0.0.1:9464)
run: install-runtime
	$(BIN)/ameli-grpc migrate
	$(BIN)/ameli-grpc demo-data
	AMELI_METRICS_LISTEN=$${AMELI_METRICS_LISTEN-127.0.0.1:9464} $(BIN)/ameli-grpc serve

# The portal's key in `make demo` (a demo value: the service listens on loopback only).
DEMO_PORTAL_KEY ?= demo-portal-key

## demo: the service as `make run` (demo data) and the reference portal on http://127.0.0.1:8080; Ctrl-C stops both
# The service gets a portal key, so that the portal calls it as a real gateway does: the demo
# accounts are loaded before (demo-data runs without keys only) and the outbox is kept.
# A background job of a make recipe ignores Ctrl-C: the trap stops the service (SIGTERM).
demo: $(PORTAL_STAMP)
	$(BIN)/ameli-grpc migrate
	$(BIN)/ameli-grpc demo-data
	@echo "Portal on http://127.0.0.1:8080; the security codes are emailed to var/outbox/"
	@trap 'kill $$service 2>/dev/null; wait $$service' EXIT INT TERM; \
	AMELI_PORTAL_API_KEYS=portal-demo:$(DEMO_PORTAL_KEY) AMELI_ALLOW_OUTBOX=true AMELI_DRAIN_DELAY=0 \
		$(BIN)/ameli-grpc serve & service=$$!; \
	PORTAL_API_KEY=$(DEMO_PORTAL_KEY) PORTAL_LISTEN=127.0.0.1:8080 $(BIN)/ameli-portal

## browser: Debian's chromium and chromium-driver for tests/portal, installed when missing (as root, with apt)
# Never fails: without them the browser tests are skipped locally, and fail under CI=true.
browser:
	@if [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -q && apt-get install -y --no-install-recommends chromium chromium-driver) \
				|| echo "chromium-driver could not be installed: the browser tests will not run"; \
		else \
			echo "chromium-driver missing (apt-get install chromium chromium-driver as root)"; \
		fi; \
	fi

## screenshots: regenerate docs/screenshots/ (shown in the README) with the browser tests
screenshots: install browser
	AMELI_TEST_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/portal/test_browser.py

## test: generated code, contract, lint, types, the client on its floor versions, then the whole pytest suite
test: install browser check-stubs buf lint typecheck test-floor
	$(PY) -m pytest

# Wheels only (cp311 wheels exist for these grpcio/protobuf): installing the client
# beside the exact floor pins also proves its declared floors admit them.
$(FLOOR_STAMP): clients/python/pyproject.toml Makefile
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		--only-binary=grpcio,protobuf,grpcio-status $(FLOOR_PINS) -e clients/python $(FLOOR_TOOLS)
	touch $(FLOOR_STAMP)

## test-floor: the client's tests on the oldest grpcio/protobuf/grpcio-status it supports
test-floor: $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/python -c "import grpc, google.protobuf, grpc_status, importlib.metadata as m; \
		got = {p: m.version(p) for p in ('grpcio', 'protobuf', 'grpcio-status')}; \
		want = dict(pin.split('==') for pin in '$(FLOOR_PINS)'.split()); \
		assert got == want, (got, want); print('client floors:', got)"
	$(FLOOR_VENV)/bin/python -m pytest --noconftest -p no:cacheprovider $(FLOOR_TESTS)

# gen_protos.py runs the pinned generator from .venv-stubs (created from PyPI when missing).
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

## bench: the service beside its anchors (bare echo, echo + Redis, argon2 in a handler), as ratios
bench: install
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .venv-stubs var .pytest_cache .mypy_cache .ruff_cache
