# The two set-up commands of the README: `make demo` and `make test`.
# Both create (or reuse) .venv and install the package with pinned CPU torch: `make demo` the runtime
# only, `make test` also the test extra (transformers, lm-eval, tensorboard, ...), which the demo never imports.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
RUNTIME := $(VENV)/.installed-runtime-$(HASH)
TESTS := $(VENV)/.installed-test-$(HASH)

.PHONY: demo test test-slow venv clean

venv: $(RUNTIME)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so pip takes the CPU wheel on disk instead of a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	rm -f $(VENV)/.installed-runtime-* && touch $(RUNTIME)

$(TESTS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(TESTS) $(RUNTIME)

demo: $(RUNTIME)
	$(BIN)/connectomes study demo

test: $(TESTS)
	$(BIN)/python -m pytest -q

test-slow: $(TESTS)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf runs
