# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# `make package`: the interpreter of the cluster's Python (build on the target's OS: for EMR
# emr-spark-8.0.0, Amazon Linux 2023 with `dnf install python3.11`, PACKAGE_PYTHON=/usr/bin/python3.11).
# The packed environment links to it, so an interpreter only the build machine has (pyenv, conda, a home
# folder) is refused, as is a native library needing a newer glibc than the cluster OS's (ttb_spark/packed_env.py).
PACKAGE_PYTHON ?= $(PYTHON)
CLUSTER_GLIBC ?= 2.34
# Where `make package` says to upload the code (the deploy/emr* JSON files name this prefix).
CODE_URI ?= s3://ttb-cola-lakehouse/code
# Delta's Python API for the cluster's own Delta (emr-spark-8.0.0 ships Delta 4.0.0): its jars
# come with the runtime, its Python files go into the packed environment.
CLUSTER_DELTA := 4.0.0
# Output folders of `make package` (the bundle takes the wheel from dist/).
DIST ?= dist
PKG  ?= build

.PHONY: setup browser demo test test-spark40 package wheelhouse bench docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/local.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints/local.txt -e '.[local,dev]'
	touch $@

# The main job end to end on embedded defaults: local Spark, ./data, loopback registry simulator.
demo: setup
	$(BIN)/python -m ttb_spark pipeline

# The whole test suite (Spark fetches the Delta jar through Ivy from Maven Central on first use), its
# modules dealt to TEST_WORKERS processes (pytest-xdist), each with its own local SparkSession. Two fill
# a 2-core machine: with three the suite took as long (40 min 50 s against 40 min 39 s from a fresh
# clone, docs/performance.md), the 60-day daily module alone then 35 of them. Modules are dealt in the order
# tests/conftest.py collects them: the slow scenario modules first.
TEST_WORKERS ?= 2
test: setup browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Headless Chromium for the report's browser test (Debian's chromium package, ~25 s), installed where this
# runs as root with apt-get; elsewhere that test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
		echo "make: no Chromium here (Debian's chromium package): the report's browser test will be skipped"

# The unit and transform tests on the lowest supported Spark + Delta pair, in a second venv with Databricks
# Runtime 17.3 LTS's library versions (constraints/dbr-17.3.txt) on its Python (3.12) where this machine has
# it, and a daily run as EMR runs it on that pair (tests/test_emr_run.py: spark-submit, local-cluster, the
# packed environment, which brings its own libraries).
RUNTIME_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12) $(PYTHON))
.venv-spark40/.installed: pyproject.toml constraints/dbr-17.3.txt
	rm -rf .venv-spark40
	$(RUNTIME_PYTHON) -m venv .venv-spark40
	.venv-spark40/bin/pip install --quiet --upgrade pip
	.venv-spark40/bin/pip install --quiet -c constraints/dbr-17.3.txt -e '.[spark40,dev]'
	.venv-spark40/bin/python -c 'import sys; print("test-spark40: Python", sys.version.split()[0])'
	touch $@

# Dealt to TEST_WORKERS processes as `make test` is: the EMR-line daily run (~3 of its ~5 minutes) on one,
# the rest on the other.
test-spark40: .venv-spark40/.installed
	.venv-spark40/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests/test_foundation.py tests/test_parse.py \
		tests/test_bronze.py tests/test_silver.py tests/test_gold_transforms.py \
		tests/test_lakehouse.py::test_a_delta_error_survives_the_conflict_check_without_deltas_python_exceptions \
		tests/test_emr_run.py

# Everything the deploy/ files name: the wheel (Databricks), the packed Python environment with the
# wheel and Delta's Python API (EMR Serverless, EMR on EC2, spark-submit.sh on a cluster), jobs/.
package: setup
	rm -rf $(DIST) $(PKG)/pyenv $(PKG)/ttb_spark_env.tar.gz
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	$(PACKAGE_PYTHON) -m venv $(PKG)/pyenv
	$(BIN)/python -m ttb_spark.packed_env $(PKG)/pyenv --glibc $(CLUSTER_GLIBC) > /dev/null
	$(PKG)/pyenv/bin/pip install --quiet -c constraints/local.txt $(DIST)/ttb_spark-*.whl
	$(PKG)/pyenv/bin/pip install --quiet --no-deps delta-spark==$(CLUSTER_DELTA)
	$(BIN)/python -m ttb_spark.packed_env $(PKG)/pyenv --glibc $(CLUSTER_GLIBC)
	$(BIN)/venv-pack --quiet -p $(PKG)/pyenv -o $(PKG)/ttb_spark_env.tar.gz
	@echo "upload:"
	@echo "  aws s3 cp $(PKG)/ttb_spark_env.tar.gz $(CODE_URI)/ttb_spark_env.tar.gz"
	@echo "  aws s3 cp --recursive jobs/ $(CODE_URI)/jobs/"
	@echo "Databricks: 'databricks bundle deploy' builds and uploads the wheel itself ($$(ls $(DIST)))"

# For a Databricks workspace without a package index: the wheel and every wheel it needs, for Databricks
# Runtime 17.3 LTS's platform (x86_64, CPython 3.12) at the runtime's own versions where it ships them.
WHEELHOUSE ?= $(PKG)/wheelhouse
wheelhouse: setup
	rm -rf $(WHEELHOUSE)
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(WHEELHOUSE) .
	$(BIN)/pip download --quiet --dest $(WHEELHOUSE) --only-binary=:all: --implementation cp --python-version 3.12 \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -c constraints/dbr-17.3.txt $(WHEELHOUSE)/ttb_spark-*.whl
	@echo "$$(ls $(WHEELHOUSE) | wc -l) wheels in $(WHEELHOUSE)"

bench: setup
	$(BIN)/python -m bench

docs: setup
	$(BIN)/python -m ttb_spark tables > docs/tables.md
	$(BIN)/python -m ttb_spark settings > docs/settings.md

clean:
	rm -rf data build dist *.egg-info
