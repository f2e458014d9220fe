# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test bench docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	touch $@

# The main job end to end on embedded defaults: local Spark, ./data, loopback registry simulator.
demo: setup
	$(BIN)/python -m ttb_spark pipeline

# The whole test suite (the Delta jar is fetched by Spark through Ivy from Maven Central on first use).
test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench

docs: setup
	$(BIN)/python -m ttb_spark tables > docs/tables.md

clean:
	rm -rf data build dist *.egg-info
