# Stan's front door: `make run` runs it, `make test` tests it. `make help` lists the rest.
SHELL := bash
PYTHON ?= python3
VENV := .venv
STAN := $(VENV)/bin/stan

.DEFAULT_GOAL := help

##@ Using Stan

.PHONY: run
run: install ## Run Stan: local control plane (unless KUBECONFIG is set), CRDs, operator and REST API
	$(STAN) run

# As root, tests check and run Stan's image. Its first build takes about a minute: done here, before pytest
# (which holds what its tests print), it shows its progress.
.PHONY: test
test: install ## Run every test against a real API server (builds the control plane, as root Stan's image, on first use)
	@if [ -z "$$STAN_TEST_KUBECONFIG" ]; then $(STAN) controlplane build; fi
	@if [ "$$(id -u)" -eq 0 ]; then $(STAN) image build >/dev/null; fi
	@echo "==> running the tests"
	@$(VENV)/bin/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$status

##@ Development

.PHONY: lint
lint: install ## Lint and format check (ruff), the layers' import contract (import-linter), types (mypy)
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@echo "==> import layers"
	@$(VENV)/bin/lint-imports
	@echo "==> mypy"
	@$(VENV)/bin/mypy

BENCH_TASKS ?= 1000
BENCH_TICKS ?= 3

.PHONY: bench
bench: $(VENV)/.bench ## Tick lateness of N StanTasks next to N CronJobs and the operator's cost (BENCH_TASKS=1000), the API server's ceiling for their claims, the facade's latency, a metrics scrape
	$(VENV)/bin/python -m bench.ticks --tasks $(BENCH_TASKS) --ticks $(BENCH_TICKS)
	$(VENV)/bin/python -m bench.writes --tasks $(BENCH_TASKS) --rounds 3
	$(VENV)/bin/python -m bench.facade --tasks 1000 --rate 200 --list-rate 20 --seconds 20
	$(VENV)/bin/python -m bench.scrape --tasks 1000

$(VENV)/.bench: $(VENV)/.installed
	@echo "==> installing the benchmark's extras into $(VENV)"
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## Create the virtualenv and install Stan with its dev extras

$(VENV)/.installed: pyproject.toml
	@echo "==> installing Stan into $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

.PHONY: controlplane
controlplane: install ## Build and cache kube-apiserver, kube-controller-manager, kubectl, etcd, helm, promtool; as root the node's too
	$(STAN) controlplane build

.PHONY: image
image: install ## Build Stan's OCI image from the Dockerfile's recipe without Docker (as root) and print its archive
	$(STAN) image build

.PHONY: generate
generate: install ## Regenerate what the models define: crds/, the chart's CRDs, its config defaults and schema
	$(STAN) generate

.PHONY: clean
clean: ## Remove the virtualenv and local state (not the cached control-plane binaries)
	rm -rf $(VENV) .stan

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-zA-Z_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
