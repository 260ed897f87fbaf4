# bireco — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline by default: hub downloads fail here; without these flags they retry for ~25 s before failing.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false
# 2 threads is the sweet spot on the 2-core CI machines (1 thread is ~1.9x slower).
export OMP_NUM_THREADS ?= 2

DEMO_DIR ?= runs/demo

.PHONY: help setup test test-all demo eval-shared lint format clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	# torch first and pinned, so nothing else can pull a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv from pyproject.toml (re-runs when pyproject.toml changes)

test: $(STAMP)  ## offline CPU test suite (unit + integration)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)  ## everything, including slow tests
	$(BIN)/python -m pytest -q -m ''

demo: $(STAMP)  ## embedded default end to end: warm-up, bireco and baseline, comparison table
	$(BIN)/bireco-train -m experiment=demo pipeline=bireco,baseline hydra.sweep.dir=$(DEMO_DIR)
	# mteb on the held-out split (written as a BEIR task folder): the same path as eval=local on real data
	for p in bireco baseline; do $(BIN)/bireco-eval run_dir=$(DEMO_DIR)/$$p hydra.run.dir=$(DEMO_DIR)/$$p/eval || exit 1; done
	$(BIN)/python -m bireco.report $(DEMO_DIR)/bireco $(DEMO_DIR)/baseline

eval-shared: $(STAMP)  ## mteb on ../shared/data (eval=local) for the demo's bireco run
	$(BIN)/bireco-eval run_dir=$(DEMO_DIR)/bireco eval.data_root=../shared/data hydra.run.dir=$(DEMO_DIR)/bireco/eval-shared

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check bireco tests experiments
	$(BIN)/ruff format --check bireco tests experiments

format: $(STAMP)  ## ruff autofix + format
	$(BIN)/ruff check --fix bireco tests experiments
	$(BIN)/ruff format bireco tests experiments

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf runs outputs multirun .pytest_cache
