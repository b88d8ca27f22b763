# agentstream developer commands. `make test` and `make demo` work from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := .ci/tools/node_modules/.bin/buf
GO_PLUGINS := .ci/tools/bin/protoc-gen-go .ci/tools/bin/protoc-gen-go-grpc
TS_DEPS := clients/typescript/node_modules/.package-lock.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: redis-server install tools proto contract-baseline interop lint format typecheck unit test check demo clean bench bench-quick

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e '.[dev]'
	touch $@

tools: $(BUF) $(GO_PLUGINS) ## buf and the code generator plugins, pinned

$(BUF): .ci/tools/package.json .ci/tools/package-lock.json
	cd .ci/tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

.ci/tools/bin/protoc-gen-go:
	GOBIN=$(CURDIR)/.ci/tools/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.6

.ci/tools/bin/protoc-gen-go-grpc:
	GOBIN=$(CURDIR)/.ci/tools/bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1

$(TS_DEPS): clients/typescript/package.json clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error

proto: install tools ## regenerate the committed Python, TypeScript and Go code from protos/
	.ci/gen_proto.sh
	$(BUF) generate

contract-baseline: tools ## record the current contract as the one `buf breaking` compares against (on release)
	$(BUF) build -o .ci/contract-baseline.binpb

lint: install tools
	$(BUF) lint
	$(BUF) breaking --against .ci/contract-baseline.binpb
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

interop: install tools $(TS_DEPS) ## one scripted LLM + one server; the Go and TypeScript scenario suites against it
	.ci/interop.sh

test: lint typecheck unit interop ## everything CI runs

check: test

demo: install ## a server on the offline demo model (or OPENAI_BASE_URL) plus one streamed run
	.ci/demo.sh

clean:
	rm -rf $(VENV) .ci/tools/node_modules .mypy_cache .ruff_cache .pytest_cache

bench: install redis-server ## the benchmark figures at full size (several minutes; figures 5, 12, 13 build benchmarks/loadgen with go)
	$(PY) -m benchmarks.bench

bench-quick: install redis-server ## the same figures at tiny sizes: a smoke run
	$(PY) -m benchmarks.bench --quick
