# bireco — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= tiny
# The targets below use local files only (tiny preset, ../shared), so they run offline: a hub lookup fails at once
# instead of retrying for ~25 s. bireco itself never sets these; PRESET=paper downloads models and MTEB data, so
# it leaves the hub on. Override with HF_HUB_OFFLINE=0 make ...
ifneq ($(PRESET),paper)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
endif
export TOKENIZERS_PARALLELISM ?= false
# 2 threads is the sweet spot on the 2-core CI machines (1 thread is ~1.9x slower).
export OMP_NUM_THREADS ?= 2
# make test: 2 workers of 1 thread each (tests/conftest.py) took 8.5 min on 2 cores, one process of 2 threads 12.4
TEST_WORKERS ?= 2

DEMO_DIR ?= runs/demo
DEMO_SEEDS ?= 1,2,3
CONTROL_SEEDS ?= 1
SHARED ?= ../shared/data
DRY_RUN ?=
ECHO_DATA ?= /datasets/echo-e5
PAPER_MODELS := llama3.2-1b qwen2.5-1.5b llama3.2-3b mistral-7b llama3.1-8b
TABLE_DIR = runs/reproduce-table/$(PRESET)
# the tiny sweep trains on the shared training pairs and evaluates on the shared task folders when present
ifneq ($(wildcard $(SHARED)/train_pairs),)
# the probe (SciFact, 5,183 documents re-encoded each time) runs in Stage II only: the convergence curve
TINY_DATA := data=local data.path=$(SHARED)/train_pairs eval.data_root=$(SHARED) \
	probe.task_dir=$(SHARED)/scifact probe.every_n_steps=50 probe.max_queries=100 stages.reconstruction.probe=false
else
TINY_DATA :=
endif

.PHONY: help setup test test-all demo eval-shared reproduce-table bench bench-mfu lint format clean

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

test: $(STAMP)  ## offline CPU test suite (unit + integration), in TEST_WORKERS pytest-xdist processes
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-all: $(STAMP)  ## everything, including slow tests
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m ''

demo: $(STAMP)  ## embedded default: bireco and baseline x 3 seeds, the two controls, the comparison over seeds
	$(BIN)/bireco-train -m experiment=demo pipeline=bireco,baseline seed=$(DEMO_SEEDS) hydra.sweep.dir=$(DEMO_DIR)
	$(BIN)/bireco-train -m experiment=demo pipeline=anchor_control,baseline_budget seed=$(CONTROL_SEEDS) \
		hydra.sweep.dir=$(DEMO_DIR)
	$(BIN)/bireco-report $(DEMO_DIR) --out $(DEMO_DIR)/report.md

eval-shared: $(STAMP)  ## mteb on ../shared/data (eval=local) for the demo's bireco run of seed 1
	$(BIN)/bireco-eval run_dir=$(DEMO_DIR)/bireco/seed-1 eval.data_root=$(SHARED) \
		hydra.run.dir=$(DEMO_DIR)/bireco/seed-1/eval-shared

reproduce-table: $(STAMP)  ## sweep + table (PRESET=tiny here; PRESET=paper on SLURM; DRY_RUN=1 prints the jobs)
ifeq ($(PRESET),paper)
ifneq ($(DRY_RUN),)
	$(BIN)/bireco-sweep-plan experiment=paper_table data.path=$(ECHO_DATA) --models $(PAPER_MODELS)
else
	# one sweep per model (per-model SLURM resources), submitted in parallel
	for m in $(PAPER_MODELS); do \
		$(BIN)/bireco-train -m experiment=paper_table model=$$m data.path=$(ECHO_DATA) & done; wait
	$(BIN)/bireco-table $(TABLE_DIR) --out $(TABLE_DIR)/table \
		$(foreach m,$(PAPER_MODELS),--expect $(m):baseline --expect $(m):bireco) \
		--wandb-project bireco --wandb-group reproduce-table-paper
endif
else
	$(BIN)/bireco-train -m experiment=reproduce_tiny $(TINY_DATA)
	$(BIN)/bireco-table $(TABLE_DIR) --out $(TABLE_DIR)/table \
		$(foreach p,baseline bireco only_q2d only_d2q baseline_budget anchor_control,--expect tiny:$(p))
endif

bench: $(STAMP)  ## speed/memory vs the reference and a bare loop -> bench/results.json, bench/RESULTS.md (ARGS=--quick)
	$(BIN)/python -m benchmarks --shared $(SHARED) $(ARGS)

bench-mfu: $(STAMP)  ## Stage II MFU, Llama-3.2-1B shape, bf16 (a GPU; ARGS="--shape tiny" anywhere) -> bench/mfu.json
	$(BIN)/python -m benchmarks.mfu $(ARGS)

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check bireco tests experiments benchmarks
	$(BIN)/ruff format --check bireco tests experiments benchmarks

format: $(STAMP)  ## ruff autofix + format
	$(BIN)/ruff check --fix bireco tests experiments benchmarks
	$(BIN)/ruff format bireco tests experiments benchmarks

clean:  ## remove runs/, outputs/, multirun/, .pytest_cache (keeps .venv, bench/ and bireco's cache: ~/.cache/bireco)
	rm -rf runs outputs multirun .pytest_cache
