# The workspace's entry points. `make setup` is idempotent; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup test lint demo clean

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

test: setup
	@scripts/in_env.sh python -m pytest

# The main job: record, train and reach goals end to end (PRESET=default|full|tiny).
PRESET ?= default
demo: setup
	@scripts/in_env.sh am-demo --preset $(PRESET) --out runs/demo-$(PRESET)

lint: setup
	@scripts/in_env.sh ruff check .

clean:
	rm -rf build install log .venv
