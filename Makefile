# The two commands of the README. Each does the whole set-up idempotently, then runs.
#   make run   - set up, build the demo model if missing, migrate, serve on http://127.0.0.1:8080
#   make test  - set up, build the demo model if missing, lint, run the whole test suite

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
DEMO   := var/models/demo

.PHONY: run test lint chat setup demo-model clean

run: setup demo-model
	$(BIN)/supportbot db upgrade
	$(BIN)/supportbot serve

test: setup demo-model lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

chat: setup demo-model
	$(BIN)/supportbot chat

setup: $(VENV)/.installed

# torch goes in first with its pin: it resolves to the local CPU build, and then the project's
# own `torch>=2.4` requirement is already met and pulls no CUDA packages.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo-model: $(DEMO)/config.json

$(DEMO)/config.json: | setup
	$(BIN)/supportbot train --config training/configs/demo.yaml

clean:
	rm -rf $(VENV) var .pytest_cache
