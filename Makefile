# actlab — `make help` lists the targets. Every target creates the venv when it is missing.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXP     ?= egotoy_main
CLUSTER ?= local
SWEEP   ?=
DRY     ?= 0
ARGS    ?=
TASK    ?=
SEED    ?= 0
SCALE   ?= 1

.DEFAULT_GOAL := help
.PHONY: help setup sysdeps data split pretrain run test test-slow grid status resubmit tables bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) ## create .venv from the pinned requirements (pip)

sysdeps: ## install Debian packages the tests need (Slurm, munge, MariaDB, LaTeX); root only, no-op otherwise
	bash cluster/install_debian_deps.sh

DATA_DONE   := data/egotoy/.generated
SPLITS_DONE := splits/.written
PRETRAINED  := checkpoints/egotoy_pretrained.pt

# File targets, so `make run` twice does not regenerate, re-split or retrain what is up to date.
EGOTOY := src/actlab/families/continual/data
$(DATA_DONE): $(STAMP) $(EGOTOY)/egotoy.py $(EGOTOY)/egotoy_render.py
	$(PY) jobs/make_egotoy.py --out data/egotoy --seed $(SEED) --scale $(SCALE)
	touch $@

$(SPLITS_DONE): $(DATA_DONE) $(EGOTOY)/split.py configs/continual/data/egotoy.yaml
	$(PY) jobs/split.py
	touch $@

$(PRETRAINED): $(SPLITS_DONE)
	$(PY) jobs/pretrain.py

data: $(DATA_DONE) ## generate the embedded egotoy data set under data/egotoy (SCALE=1, SEED=0)

split: $(SPLITS_DONE) ## write splits/{pretrain,train,test}.json for egotoy

pretrain: $(PRETRAINED) ## train the population model on the pretrain users (checkpoints/)

# ARGS: launch.yaml overrides (resources.array_parallelism=2, cluster.account=...); TASK: key=value
# overrides of every task, space-separated (TASK="data.max_clips=16 method.lr=0.1"), given to the
# launcher one by one after `--`, so no shell or Hydra quoting is needed.
# Only the continual family's egotoy experiments need the egotoy data, splits and pretrained model as
# make targets; every other family generates its embedded set in a preparation step of its pipeline.
run: $(STAMP) ## an embedded experiment end to end to a LaTeX table and plots (EXP=egotoy_main, CLUSTER=local)
	$(if $(filter egotoy_%,$(EXP)),$(MAKE) --no-print-directory pretrain,)
	$(if $(filter local_slurm,$(CLUSTER)),bash cluster/local_slurm/start.sh >/dev/null,)
	$(PY) jobs/run.py experiment=$(EXP) cluster=$(CLUSTER) dry=$(DRY) $(ARGS) -- $(TASK)

test: $(STAMP) sysdeps ## the test suite without the end-to-end tests marked slow (those: make test-slow)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP) sysdeps ## the end-to-end tests marked slow (pipelines on local Slurm, every family's embedded run)
	$(PY) -m pytest -q -m slow

grid: $(STAMP) ## submit EXP's whole pipeline: steps, arrays, aggregation (CLUSTER=bluecrystal|local_slurm|local, DRY=1)
	$(if $(filter local_slurm,$(CLUSTER)),bash cluster/local_slurm/start.sh >/dev/null,)
	$(PY) jobs/grid.py experiment=$(EXP) cluster=$(CLUSTER) dry=$(DRY) $(ARGS) -- $(TASK)

status: $(STAMP) ## table of a sweep's tasks (SWEEP=path, default: latest)
	$(PY) jobs/status.py $(SWEEP)

resubmit: $(STAMP) ## resubmit failed or missing tasks of a sweep (SWEEP=path, default: latest)
	$(PY) jobs/resubmit.py $(SWEEP)

tables: $(STAMP) ## LaTeX tables and plots for a sweep, into <sweep>/report (SWEEP=path, default: latest)
	$(PY) postprocess/to_latex.py --sweep $(or $(SWEEP),latest)

bench: $(STAMP) ## benchmarks, printed as ratios and written to benchmarks/results/
	$(PY) benchmarks/run_all.py

clean: ## remove generated data, results and sweeps (keeps .venv)
	rm -rf data splits results sweeps outputs checkpoints wandb

# The hand family (docs/hand.md): its embedded set, its toy experiment, its FPHA grids.
HAND_EXP ?= fpha_main
.PHONY: hand-data hand-run hand-grid
hand-data: $(STAMP) ## write the embedded handtoy set under data/handtoy (hand family; skipped when complete)
	$(PY) jobs/hand.py task=data experiment=handtoy_main

hand-run: $(STAMP) ## the hand family's toy experiment end to end: Table 1 (= make run EXP=handtoy_main)
	$(MAKE) --no-print-directory run EXP=handtoy_main

hand-grid: $(STAMP) ## the hand family's FPHA pipeline (HAND_EXP=fpha_main|fpha_crop|fpha_film, CLUSTER=bluecrystal, DRY=1)
	$(MAKE) --no-print-directory grid EXP=$(HAND_EXP)
