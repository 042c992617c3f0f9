# envhub: `make run` starts it, `make test` checks it. Both set up everything
# they need on a fresh Debian/Ubuntu machine (as root, apt-get is used for the
# few system packages; elsewhere install them yourself: git, bubblewrap, chromium).

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
TOOLS    := .tools
BUN      := $(TOOLS)/node_modules/.bin/bun
BUN_VERSION := 1.4.5
# The embedded default's buckets run s3rver (envhub/integrations/backing/embedded_buckets.py
# checks this version: its launcher uses s3rver's internals).
S3RVER_VERSION := 3.7.1
S3RVER   := $(TOOLS)/.s3rver-$(S3RVER_VERSION)
# pytest-xdist processes for `make test`; each owns its PostgreSQL and Redis.
TEST_PROCESSES ?= 2
export REFLEX_TELEMETRY_ENABLED := false
export REFLEX_CHECK_LATEST_VERSION := false

.PHONY: run test setup lint screenshots migrate clean system-deps test-system-deps test-cluster test-tools bench bench-terminal bench-api bench-scale bench-pull-requests bench-releases

run: system-deps setup ## Start envhub on its embedded default and print the URL
	$(PY) -m envhub.launcher run

# Every component a test needs is installed first; a missing one fails its tests,
# and any skip not on tests/allowed-skips.toml fails the run (tests/support/skips.py).
# Tests sharing an expensive fixture (the cluster, the browser's envhub) stay on
# one process (tests/support/scheduling.py).
test: system-deps test-system-deps setup test-tools test-cluster lint ## Lint, type-check and run every test
	$(PY) -m pytest -n $(TEST_PROCESSES)

setup: $(VENV)/.installed $(BUN) $(S3RVER)

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# This checkout itself, editable: gives .venv/bin/envhub (the CLI).
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Reflex cannot download bun here; the npm registry ships it.
$(BUN):
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error bun@$(BUN_VERSION)
	$(BUN) --version

# The embedded default's buckets (npm's s3rver), beside bun.
$(S3RVER):
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error --save-exact s3rver@$(S3RVER_VERSION)
	touch $@

system-deps:
	@bash deploy/scripts/system-deps.sh run

test-system-deps:
	@bash deploy/scripts/system-deps.sh test

# A real kube-apiserver for the Kubernetes tests, built once from Debian's
# source package and cached outside the checkout (first build: a few minutes).
test-cluster:
	bash tests/cluster/build.sh

# helm, kubectl (pinned, never the machine's) and hadolint, into a cache outside the checkout.
test-tools: setup
	$(PY) -m tests.support.tools

lint: setup
	$(VENV)/bin/ruff check envhub tests alembic rxconfig.py bench
	$(VENV)/bin/ruff format --check envhub tests alembic rxconfig.py bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench-terminal: setup ## Browser-terminal speed beside a PTY loop and terminado
	$(PY) -m bench.terminal

bench-api: setup test-system-deps ## REST, MCP and CLI latency with 1,000 environments on PostgreSQL
	$(PY) -m bench.api

bench-scale: setup test-system-deps ## 10,000 environments, a year of audit trail: REST p99, SQL per call, a reconciler pass, chain verification (each beside 100 environments)
	$(PY) -m bench.scale

bench-pull-requests: setup test-system-deps test-cluster ## Webhook to PR comment and to ready, GitHub calls per pull request (local and test-cluster runtimes)
	$(PY) -m bench.pull_requests

bench-releases: setup test-system-deps test-cluster test-tools ## Merge -> staging ready and approval -> production ready for a 50-object chart, beside helm upgrade --install (time, apiserver requests)
	$(PY) -m bench.releases

migrate: setup
	$(PY) -m envhub.launcher migrate

screenshots: setup system-deps test-system-deps ## Regenerate docs/screenshots/ (not part of `make test`)
	$(PY) -m tests.browser.screenshots docs/screenshots

clean:
	rm -rf .web .states reflex.lock var/run
