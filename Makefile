# Two entry points: `make quickstart` (the main job) and `make test` (the test suite).
# Both create .venv and install what they need; torch CPU is installed first so that no
# dependency pulls a CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv quickstart test test-all clean

$(BIN)/polymodal: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || $(BIN)/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $(BIN)/polymodal

venv: $(BIN)/polymodal

quickstart: venv
	$(BIN)/polymodal quickstart --out runs/quickstart

test: venv
	$(BIN)/python -m pytest -m "not slow"

test-all: venv
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
