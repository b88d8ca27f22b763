# agentstream developer commands. `make test` and `make demo` work from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := .ci/tools/node_modules/.bin/buf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: redis-server install tools proto lint format typecheck unit test check demo clean bench bench-quick

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e '.[dev]'
	touch $@

tools: $(BUF)

$(BUF): .ci/tools/package.json .ci/tools/package-lock.json
	cd .ci/tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

proto: install ## regenerate the committed stubs from protos/
	.ci/gen_proto.sh

lint: install tools
	$(BUF) lint
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

typecheck: install
	$(PY) -m mypy

redis-server: ## the tests start their own redis-server; install it from Debian when missing
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

unit: install tools redis-server
	$(PY) -m pytest

test: lint typecheck unit ## everything CI runs

check: test

demo: install ## a server on the offline demo model (or OPENAI_BASE_URL) plus one streamed run
	.ci/demo.sh

clean:
	rm -rf $(VENV) .ci/tools/node_modules .mypy_cache .ruff_cache .pytest_cache

bench: install redis-server ## the seven benchmark figures at full size (several minutes)
	$(PY) -m benchmarks.bench

bench-quick: install redis-server ## the same figures at tiny sizes: a smoke run
	$(PY) -m benchmarks.bench --quick
