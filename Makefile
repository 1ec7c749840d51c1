# One-command set-up, run and test. Everything installs into .venv.
#   make run    set up, then run the whole pipeline on the built-in synthetic data
#   make run STUDIES="chest"   one study (or several) alone: their target rules
#   make test   set up, then run the test suite (includes the smoke workflow end to end)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
CONFIG ?= config/config.yaml
# Target rules to build: empty = every study the config enables (rule all).
STUDIES ?=
# torch is installed first, so that the package's torch requirement is already met and pip
# does not fetch the (several GB) default CUDA build from PyPI. By default: a local wheel
# when pip's configured find-links hold one (its dependencies from the usual index), else
# the CPU build, with its dependencies, from the PyTorch CPU index.
# GPU users name their index, e.g. make run TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
CPU_TORCH_INDEX := https://download.pytorch.org/whl/cpu
STAMP  := $(VENV)/.installed

.PHONY: setup run smoke test lint report benchmark clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
ifeq ($(TORCH_INDEX),)
	( $(BIN)/python -m pip install --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null \
		&& $(BIN)/python -m pip install "torch==$(TORCH_VERSION)" ) \
		|| $(BIN)/python -m pip install --index-url "$(CPU_TORCH_INDEX)" "torch==$(TORCH_VERSION)"
else
	$(BIN)/python -m pip install --index-url "$(TORCH_INDEX)" "torch==$(TORCH_VERSION)"
endif
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

# Interrupted, even by kill -9? Run the same target again: it clears the killed run's locks
# (when no other run is alive here), reruns its unfinished jobs and resumes training from checkpoints.
run: setup
	$(BIN)/snakemake $(STUDIES) --profile profiles/local --cores $(CORES) --configfile $(CONFIG)

smoke: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --configfile config/smoke.yaml

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/snakemake --lint

report: setup
	$(BIN)/snakemake --profile profiles/local --configfile $(CONFIG) --report results/report.zip

benchmark: setup
	$(BIN)/python benchmarks/bench_metrics.py --out benchmarks/results/metrics.json
	$(BIN)/python benchmarks/bench_registration.py --out benchmarks/results/registration.json
	$(BIN)/python benchmarks/bench_multiatlas.py --out benchmarks/results/multiatlas.json
	$(BIN)/python benchmarks/bench_planning.py --out benchmarks/results/planning.json
	$(BIN)/python benchmarks/bench_mammo_registration.py --out benchmarks/results/mammo_registration.json

clean:
	rm -rf results .snakemake
