# The two commands: `make demo` (everything, end to end) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SERVING_VENV := .venv-serving
BIN := $(VENV)/bin

# One state root for everything local; DAGSTER_HOME lives under it.
export PLATFORM_HOME ?= $(CURDIR)/.platform
export DAGSTER_HOME ?= $(PLATFORM_HOME)/dagster_home
# The platform environment first on PATH, so that dbt, dagster and mlflow resolve to it.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
DATA_ARGS ?= --days 60 --rows-per-day 1000

.PHONY: demo test install data materialize where ui mlflow-ui stop-serving serving-status rollback clear-rollback clean benchmark bench loop

demo: install data materialize where

install: $(VENV)/.installed $(SERVING_VENV)/.installed

# torch==2.13.0 first and pinned: a range would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The serving environment is separate: seldon-core 1.x pins numpy<2, Flask<3, click<8.1.
$(SERVING_VENV)/.installed: deploy/serving/requirements.txt
	test -x $(SERVING_VENV)/bin/python || $(PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/pip install -q torch==2.13.0 'numpy<2'
	$(SERVING_VENV)/bin/pip install -q -r deploy/serving/requirements.txt
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# Also records the first landed day: the daily partitions start there (see ingest/partitions.py).
data: install
	$(BIN)/python -m platform_assets generate $(DATA_ARGS)

# For each declared use case: its landed days (one run for the whole range), everything up to serving,
# then the newest day's rows sent to its server as callers would, its log ingested, and the drift report.
# platform_assets.launch runs them in this process as `dagster asset materialize` / `dagster job execute -m`
# do, but records each run under the code location workspace.yaml gives (platform_assets), the one the
# UI loads: the UI lists a job's runs by that location, and the `-m` commands record none.
LAUNCH := $(BIN)/python -m platform_assets.launch
materialize: install $(DAGSTER_HOME)/dagster.yaml
	set -e; for uc in $$($(BIN)/python -m platform_assets use-cases); do \
		$(LAUNCH) --job $${uc}__ingest_days \
			--partition-range "$$($(BIN)/python -m platform_assets landing-days --use-case $$uc)"; \
		$(LAUNCH) --job $${uc}__features_to_serving; \
		$(BIN)/python -m platform_assets traffic --use-case $$uc; \
		$(LAUNCH) --job $${uc}__inference_days \
			--partition "$$($(BIN)/python -m platform_assets landing-days --use-case $$uc --last)"; \
		$(LAUNCH) --job $${uc}__drift; \
	done

where: install
	@$(BIN)/python -m platform_assets where

# `dg dev` (what Dagster now points to instead of `dagster dev`) on the code location of workspace.yaml,
# started inside $DAGSTER_HOME: dagster warns about a dagster.yaml in the folder it starts in unless that
# folder is $DAGSTER_HOME, and the dagster.yaml here is only the template copied there.
ui: install $(DAGSTER_HOME)/dagster.yaml
	cd "$(abspath $(DAGSTER_HOME))" && DAGSTER_HOME="$$(pwd -P)" PLATFORM_HOME="$(abspath $(PLATFORM_HOME))" \
		$(CURDIR)/$(BIN)/dg dev -w $(CURDIR)/workspace.yaml

# The closed loop on its own state root (and port 9200, beside a demo's server on 9100): history,
# live traffic through the server, drift from live day 4, retraining by the platform's sensors and
# automation (ticked in process).
LOOP_HOME ?= $(CURDIR)/.platform-loop
LOOP_ARGS ?=
loop: install
	PLATFORM_HOME=$(LOOP_HOME) DAGSTER_HOME=$(LOOP_HOME)/dagster_home SERVING_PORT=$${SERVING_PORT:-9200} bash -c 'mkdir -p $$DAGSTER_HOME && cp -n dagster.yaml $$DAGSTER_HOME/ ; $(BIN)/python -m platform_assets loop --use-case loan_default $(LOOP_ARGS)'
	@PLATFORM_HOME=$(LOOP_HOME) $(BIN)/python -m platform_assets stop-serving

# On the port of MLFLOW_UI_URL (default http://127.0.0.1:5000), the address every MLflow link the platform writes uses.
mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(PLATFORM_HOME)/mlflow/mlflow.db \
		--port "$$($(BIN)/python -c 'from platform_assets.where import mlflow_ui_port; print(mlflow_ui_port())')"

stop-serving: install
	$(BIN)/python -m platform_assets stop-serving

# The version that served before returns to the stable endpoint: make rollback USE_CASE=loan_default
rollback: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m platform_assets rollback --use-case $(USE_CASE)

# A rolled-back version (or retrained identical weights) may pass the gate again once a person says so:
# make clear-rollback USE_CASE=loan_default VERSION=2
clear-rollback: install
	$(BIN)/python -m platform_assets clear-rollback --use-case $(USE_CASE) --version $(VERSION)

# What supervisord runs for each use case's endpoint (router, model and feature servers) and since when.
serving-status: install
	@for conf in $(PLATFORM_HOME)/serving/*/supervisor/supervisord.conf; do \
		[ -f "$$conf" ] && echo "== $$conf" && $(BIN)/supervisorctl -c "$$conf" status; done; true

# The tests generate their own days (2025-12 onward): the first day a demo recorded is not theirs.
# Test files run on TEST_WORKERS processes; a file stays on one worker (its module fixtures run once).
TEST_WORKERS ?= 2
test: install
	PLATFORM_PARTITIONS_START=2025-01-01 $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# The whole graph at 100k, 1M and 10M rows: each stage's wall time, rows/s and peak memory (benchmarks/run.py);
# BENCH_ARGS="--sizes 100k 1M" for fewer. Appends its table to benchmarks/RESULTS.md.
BENCH_ARGS ?=
bench: install
	$(BIN)/python benchmarks/run.py --record $(BENCH_ARGS)

benchmark: install
	$(BIN)/python benchmarks/bench_platform.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_training.py

clean: stop-serving
	rm -rf $(PLATFORM_HOME) dbt/target dbt/logs
