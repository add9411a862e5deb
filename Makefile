# Two commands do all set-up on a fresh machine:
#   make run    # create .venv, install the pinned stack, run the whole pipeline on the bundled data
#   make test   # create .venv (+ .venv-airflow for the DAG tests), install the pinned stacks, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-stamp
PIP_FLAGS := -q --disable-pip-version-check

.PHONY: setup airflow-setup run test test-fast clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
	$(PY) -m pip install $(PIP_FLAGS) --no-deps torch==2.13.0
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -r requirements.lock
	$(PY) -m pip install $(PIP_FLAGS) --no-deps petastorm==0.13.1
	$(PY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Airflow gets its own venv: in the project's it breaks pyarrow/numpy and replaces pyspark.
$(AIRFLOW_STAMP): airflow_dags/requirements-airflow.lock
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install $(PIP_FLAGS) --no-deps -r airflow_dags/requirements-airflow.lock
	touch $(AIRFLOW_STAMP)

airflow-setup: $(AIRFLOW_STAMP)

run: setup
	$(VENV)/bin/recspark run

# Two workers, whole files per worker: the long integration, Airflow and cluster modules run side by side.
test: setup airflow-setup
	$(PY) -m pytest -n 2 --dist loadfile --durations=30

# Unit tests only (no whole jobs, no cluster daemons, no Airflow): the edit-run loop.
test-fast: setup
	$(PY) -m pytest -n 2 -m unit

clean:
	rm -rf warehouse mlruns mlflow.db spark-warehouse data/synthetic
