# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv if needed, installs, builds the demo model + index, runs the demo
#   make test   creates/updates .venv, runs lint (ruff, mypy) and the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles from source (about 16 minutes on 2 cores, cached by pip after).
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo
DEMO_PORT ?= 8080

.PHONY: venv install demo lint test test-fast bench bench-3b clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# Re-install when the project metadata changes. torch==2.13.0 is installed first, alone,
# so that nothing later resolves a CUDA build of torch.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]' torch==2.13.0
	bash scripts/ensure-wordnet.sh
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install everything (edge, kb, train, dev)

demo: $(STAMP)  ## build the demo bundle, describe a sample photo, then start the server
	mkdir -p $(DEMO_DIR)
	$(BIN)/skinspector dev sample-photo --out $(DEMO_DIR)/sample-lesion.jpg
	$(BIN)/skinspector describe $(DEMO_DIR)/sample-lesion.jpg --max-tokens 48
	@echo "Starting the clinic server (demo bundle). Pair a phone from another terminal:"
	@echo "    $(BIN)/skinspector pair --data-dir $(DEMO_DIR)/data"
	$(BIN)/skinspector serve --data-dir $(DEMO_DIR)/data --port $(DEMO_PORT)

# The top-level import packages (an application layout) and what else is linted.
PACKAGES := skinspector edge_server sync_agent review_hub updates training kb_builder clients
LINTED := $(PACKAGES) tests bench

lint: $(STAMP)  ## ruff, mypy and the import-direction contracts (import-linter)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint  ## lint, then the whole test suite (tiny models are built once and cached)
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-wordnet.sh
	$(BIN)/pytest

test-fast: $(STAMP)  ## tests that need no model build
	$(BIN)/pytest -m "not slow"

bench: $(STAMP)  ## run the benchmark scripts
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_retrieval.py
	$(BIN)/python bench/bench_server.py

# Not part of `make bench`/`make test`: builds a random model with Qwen2.5-VL-3B's shapes
# on first use (about 8 minutes, 8 GiB of RAM and 9.5 GB of cache on 2 cores).
bench-3b: $(STAMP)  ## benchmark at the real model size (3B shapes, random weights)
	$(BIN)/python bench/bench_3b.py --threads 2

clean:  ## remove the venv and build outputs (not the model cache)
	rm -rf $(VENV) $(DEMO_DIR) build dist *.egg-info
