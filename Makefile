# futures-scan: every target sets up what it needs (virtualenv, pinned packages, config.json).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.json

.PHONY: run demo test bench lint clean

run: $(VENV)/.runtime $(CONFIG)  ## collect from the real exchanges in config.json
	$(BIN)/python scripts/ensure_broker.py --config $(CONFIG)
	$(BIN)/python main.py --config $(CONFIG)

demo: $(VENV)/.runtime  ## offline: the built-in exchange simulator feeds the collector
	$(BIN)/python scripts/ensure_broker.py --config $(CONFIG)
	$(BIN)/python main.py --demo --config $(CONFIG)

test: $(VENV)/.dev  ## lint, then the test suite against a real RabbitMQ and the simulator
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(VENV)/.dev  ## scripts/bench.py with its default scenario
	$(BIN)/python scripts/bench.py

lint: $(VENV)/.dev
	$(BIN)/ruff check .

$(CONFIG):
	cp config.example.json $(CONFIG)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) .venv-bench .pytest_cache .ruff_cache
