# fedledger — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.fedledger-installed
EXTRAS ?= test,fabric,train,bench

.PHONY: help venv demo test lint clean
help:
	@echo "make demo         run the end-to-end federated demo on the embedded ledger"
	@echo "make test         run the whole test suite (brings the Fabric network up as needed)"
	@echo "make lint         ruff, basedpyright and import-linter (make test runs them first)"
	@echo "make bench-<study> one benchmark study (commit robustness privacy-utility latency scalability overhead"
	@echo "                  trust aggregate-check shares); QUICK=1: short version into bench/quick/; results in docs/bench-*.md"
	@echo "make network-up | network-down | network-status | add-org | fabric-bin"

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[$(EXTRAS)]'
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fedledger demo

test: lint
	$(VENV)/bin/pytest -q

# ruff (style, absolute imports), basedpyright (types, every fedledger.* import resolved) and import-linter
# (the layers in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/basedpyright
	$(VENV)/bin/lint-imports

.PHONY: bench
bench: bench-commit

-include bench/bench.mk

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

-include network/network.mk
