# The workspace's entry points. `make setup` is idempotent; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup test lint clean

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

test: setup
	@scripts/in_env.sh python -m pytest

lint: setup
	@scripts/in_env.sh ruff check .

clean:
	rm -rf build install log .venv
