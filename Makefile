# The two commands: `make run` and `make test`. Both build .venv from nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run run-cluster test lint typecheck unit slow bench bench-faults clean venv flink

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	# PyTorch first, pinned: this exact CPU wheel is on the machine's disk; anything pip
	# could pick instead downloads several GB (pyproject declares torch>=2.2)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# real logged bandit data (the Open Bandit Dataset sample) for OPE validation: obp's
	# old pins (torch 1.12, Python <3.11) are not needed to read it, so no deps
	$(BIN)/pip install -q --no-deps --ignore-requires-python obp==0.5.7
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(BIN)/recloop serve --host $(HOST) --port $(PORT)

# the scaled-out layout on this machine (README, "Scaled out"): the Procfile's two servers on
# PostgreSQL, the stream's events on NATS JetStream and its lists in Redis, `recloop stream`
WEB1_PORT ?= 8001
WEB2_PORT ?= 8002
run-cluster: venv
	$(BIN)/python -m benchmarks.cluster check
	PATH="$(CURDIR)/$(BIN):$$PATH" WEB1_PORT=$(WEB1_PORT) WEB2_PORT=$(WEB2_PORT) \
		CLUSTER_HOST=$(HOST) $(BIN)/honcho start -f Procfile

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	# the layers (.importlinter): what each part of recloop may import
	$(BIN)/lint-imports --no-cache

typecheck: venv
	$(BIN)/mypy --strict src

# test processes (pytest-xdist): most tests wait on servers, subprocesses and sockets, so
# two overlap well on two cores; TEST_WORKERS=0 runs the tests in this process. A file's
# tests stay in one process (--dist loadfile): module fixtures such as the cluster's are
# started once, and tests that build on the ones before them keep their order
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile

unit: venv
	$(BIN)/pytest -q -m "not slow" $(XDIST) --durations=20

# the optional extras (the Flink runner; RecSim and RecoGym): the slow stage installs them
# and runs their tests
flink: venv
	$(BIN)/pip install -q -e '.[dev,flink,sims]'
	$(BIN)/pip install -q --no-deps recogym==0.1.3.0
	# the dashboard's browser test drives Debian's Chromium (Playwright downloads no browser)
	[ -x /usr/bin/chromium ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium)

slow: flink
	# no test collected is a failure (pytest's exit status 5), not a pass
	RECLOOP_ARTIFACTS=.ci/artifacts $(BIN)/pytest -q -m slow $(XDIST) --durations=25

test: lint typecheck unit

bench: venv
	$(BIN)/python -m benchmarks.run_all

# the fault matrix (root: tmpfs mounts; private PostgreSQL, NATS and Redis it starts itself):
# every fault under load in the embedded and the cluster layout, one table
bench-faults: venv
	$(BIN)/python -m benchmarks.faults

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
