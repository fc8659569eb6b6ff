# The two commands a new user needs: `make run` and `make test`.
# Everything else is set up on demand; re-running skips what is done.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
JAR_DIR := .phm/jars
DELTA_VERSION := $(shell sed -n 's:.*<delta.version>\(.*\)</delta.version>.*:\1:p' jvm/pom.xml)
JAR_STAMP := $(JAR_DIR)/delta-storage-$(DELTA_VERSION).jar
UDF_JAR := libs/phm/runtime/jars/phm-udf.jar
UDF_SOURCES := $(wildcard jvm/src/org/phm/udf/*.java)
INSTALL_STAMP := $(VENV)/.phm-installed
CONFIG ?= configs/local.yaml
PYTEST_ARGS ?=

.PHONY: setup jars run test test-fast cluster-test package lint format bench drill clean browser strip-notebooks airflow

setup: $(INSTALL_STAMP) $(JAR_STAMP) $(UDF_JAR)

# Packages are installed with uv (from PyPI, into the venv): a fresh environment in 45 s where pip took 150 s
# with a warm cache, and Airflow's in 15 s. pip and setuptools stay in the venv for `pip wheel` (make package).
# --compile-bytecode: uv (unlike pip) writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (CI
# sets it) Python never writes them either, so every process (pytest, kernels, Spark's Python workers, the CLI)
# would compile every module it imports from source: 6.7-9 s to import our stack against 2.4 s compiled.
UV_VERSION := 0.13.8
UV := $(BIN)/uv
UV_INSTALL := $(UV) pip install --quiet --compile-bytecode --python
$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV_INSTALL) $(BIN)/python --upgrade pip "setuptools>=68" wheel

$(INSTALL_STAMP): $(UV) setup.py pyproject.toml
	$(UV_INSTALL) $(BIN)/python -e ".[test,dev]"
	@touch $@

jars: $(JAR_STAMP) $(UDF_JAR)

# Delta's JVM jars from Maven Central (jvm/pom.xml), into a git-ignored folder.
$(JAR_STAMP): jvm/pom.xml
	@command -v mvn >/dev/null || { echo "make: Maven (mvn) not found; install it (it fetches Delta's jars from Maven Central)"; exit 2; }
	mvn --batch-mode --quiet -Dstyle.color=never -f jvm/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(JAR_DIR)
	@test -f $@ || { echo "make: Maven ran but $@ is missing; check jvm/pom.xml"; exit 2; }

# Our own Spark functions (jvm/src: the pseudonyms' HMAC), compiled against the Spark jars PySpark ships, into the
# package (phm.runtime.udf_jar; a wheel carries it, as Splink's carries its similarity jar).
$(UDF_JAR): $(UDF_SOURCES) $(INSTALL_STAMP)
	@command -v javac >/dev/null || { echo "make: javac not found; install a Java 17 JDK (it compiles jvm/src)"; exit 2; }
	rm -rf $(JAR_DIR)/udf-classes && mkdir -p $(JAR_DIR) $(dir $@)
	javac --release 17 -nowarn -cp "$$($(BIN)/python -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')/*" -d $(JAR_DIR)/udf-classes $(UDF_SOURCES)
	cd $(JAR_DIR)/udf-classes && $(CURDIR)/$(BIN)/python -m zipfile -c $(CURDIR)/$@ org

# A local development pseudonymisation key is created (outside the checkout) if none is configured.
run: setup
	$(BIN)/phm keygen --if-missing --config $(CONFIG)
	$(BIN)/phm refresh --config $(CONFIG)

# The four set-ups (our environment, Delta's jars, Chromium, Airflow's environment) are independent and mostly
# wait on downloads, so they run at once.
test:
	@$(MAKE) --no-print-directory -j4 setup browser airflow
	@$(BIN)/python -m compileall -q -j 0 libs jobs tests >/dev/null  # our own modules too (see UV_INSTALL)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the report's browser test (tests/integration/test_report.py), as root or through sudo.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
browser:
	@test -x $(CHROMIUM) || { echo "make: installing Debian's chromium for the browser test"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "make: could not install chromium (apt-get as root); install it or set CHROMIUM=/path/to/chromium"; exit 2; }

# Apache Airflow in its own environment (its pins are its own), for the test that loads deploy/airflow/'s DAG.
AIRFLOW_VENV := .phm/airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
AIRFLOW_PACKAGES := "apache-airflow==3.3.2" "apache-airflow-providers-apache-spark==6.3.4"
airflow: $(AIRFLOW_STAMP)
$(AIRFLOW_STAMP): $(UV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(UV_INSTALL) $(AIRFLOW_VENV)/bin/python $(AIRFLOW_PACKAGES)
	@touch $@

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

cluster-test: setup package
	$(BIN)/python -m pytest -m cluster $(PYTEST_ARGS)

# A wheel for executors' --py-files (pure Python: importable from the zip) and for installs.
package: setup
	rm -rf dist && $(BIN)/pip wheel --quiet --no-deps --no-build-isolation -w dist .
	@ls dist/*.whl

lint: setup
	$(BIN)/ruff check libs jobs tests bench deploy setup.py
	$(BIN)/ruff format --check libs jobs tests bench deploy setup.py

format: setup
	$(BIN)/ruff format libs jobs tests bench deploy setup.py
	$(BIN)/ruff check --fix libs jobs tests bench deploy setup.py

# Notebooks are committed without outputs (tests/integration/test_notebooks.py checks it).
strip-notebooks: setup
	$(BIN)/nbstripout notebooks/*.ipynb

# Whole-system sizes: writes bench/results.json and bench/results.md (BENCH_ARGS="--sizes 100000 --repeats 3").
BENCH_ARGS ?=
bench: setup
	$(BIN)/phm keygen --if-missing --config configs/bench.yaml
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# kill -9 in every stage of a real refresh of the test sample; tables compared with an uninterrupted refresh's
# (bench/kill_drill.md; docs/trust.md). 40-50 minutes on 2 cores.
drill: setup
	$(BIN)/python bench/kill_drill.py $(DRILL_ARGS)

clean:
	rm -rf build dist *.egg-info landing truth warehouse reports restricted logs mlruns .phm/checkpoints spark-warehouse
