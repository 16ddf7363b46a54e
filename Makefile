# The two commands a newcomer needs: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2

.PHONY: demo test test-fast venv dev bench-env bench clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   - install into $(VENV) and run the workflow on the bundled demo (results/demo/report.html)"
	@echo "make test   - install into $(VENV) with dev extras and run the test suite"
	@echo "make bench  - run benchmarks/ side by side with peer tools (separate .venv-bench)"

# torch is pinned and installed first so that nothing pulls a CUDA build (a CPU wheel is cached locally)
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -e ".[dev]"
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

# profiles/default is picked up by Snakemake itself as the workflow profile
demo: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES)
	@echo "report: results/demo/report.html"

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not workflow"

.venv-bench/.installed: pyproject.toml benchmarks/requirements-peers.txt
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install "torch==2.13.0"
	.venv-bench/bin/pip install -e .
	.venv-bench/bin/pip install -r benchmarks/requirements-peers.txt
	.venv-bench/bin/pip install --no-deps biotempy==2.1.2
	touch $@

bench-env: .venv-bench/.installed

bench: .venv-bench/.installed
	.venv-bench/bin/python benchmarks/simulate.py

clean:
	rm -rf .snakemake results logs benchmarks/demo .pytest_cache
