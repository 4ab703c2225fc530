# One-command set-up: `make run` (a real search) and `make test` (the test suite) create the
# virtual environment and install every dependency (pip packages, the Fashion-MNIST apt package)
# when missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint wheel bench-layers clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: on the reference machines a CPU wheel of 2.13.0 lies on disk;
	# elsewhere any torch >= 2.3 will do (a newer range would pull a multi-GB CUDA build here).
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0 || $(BIN)/pip install -q "torch>=2.3"
	$(BIN)/pip install -q -e ".[all,dev]"
	# the `syne` extra without its heavy requirements (see pyproject.toml)
	$(BIN)/pip install -q --no-deps "syne-tune>=0.16"
	bash .ci/system-deps.sh
	touch $(STAMP)

setup: $(STAMP)

SPACE ?= search_spaces/digits_ranks_and_recipe.yaml

# The main job: a real search on the local default (in-process Ray, MLflow in ./mlruns, bundled
# data); it prints the Pareto front and where to browse it.
run: $(STAMP)
	$(BIN)/ranksearch run $(SPACE)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ranksearch tests

# The wheel (dashboard assets and shipped search spaces inside, as package data); the test suite
# builds and installs one too (tests/test_packaging.py).
wheel: $(STAMP)
	$(BIN)/pip wheel --no-deps --no-build-isolation -w dist .

bench-layers: $(STAMP)
	$(BIN)/python -m ranksearch.bench.layers

clean:
	rm -rf $(VENV) .pytest_cache mlruns runs build dist
