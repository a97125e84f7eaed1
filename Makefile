# The two commands a new user types are `make run` and `make test`;
# both install into .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench soak demo lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/orchestrator run

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/embedded.py
	$(BIN)/python bench/insight.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/channels.py
	$(BIN)/python bench/hl7.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/cli.py

# Ten minutes of the real service under traffic, kill -9s and a slow sandbox,
# then the invariant checker (SQLite, then PostgreSQL at 127.0.0.1:5432).
soak: install
	$(BIN)/python bench/soak.py

demo: install
	$(BIN)/orchestrator simulate --events samples/events/knee-replacement.jsonl --format table

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
