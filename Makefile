# Set-up and everyday commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two cores on the reference machine: keep torch from oversubscribing them.
export OMP_NUM_THREADS ?= 2

.PHONY: demo test docs lint format bench bench-setup bench-sdv clean

$(BIN)/vaekit: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build on this machine; the project's torch>=2.3 then keeps it.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==2.13.0
	# hf: the Hugging Face datasets reader is tested too (datasets keeps the torch above).
	$(BIN)/pip install --quiet -e '.[dev,docs,hf]'
	touch $(BIN)/vaekit

demo: $(BIN)/vaekit
	$(BIN)/vaekit train --config configs/digits.toml --out runs/demo --overwrite
	$(BIN)/vaekit evaluate runs/demo --num-samples 1000

test: $(BIN)/vaekit
	-bash scripts/ensure-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# Two worker processes, each test file on one of them (module fixtures are built once):
	# the tests hold torch to one thread, so two cores run two files at a time.
	$(BIN)/pytest -q -n 2 --dist loadfile

# The documentation site, offline, warnings as errors: open build/docs/index.html.
docs: $(BIN)/vaekit
	$(BIN)/sphinx-build -W --keep-going -q -b html docs build/docs

format: $(BIN)/vaekit
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The peers of benchmarks/bench_train_speed.py live in their own venv (pythae pins old deps).
.venv-peers/bin/python:
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/pip install --quiet torch==2.13.0
	.venv-peers/bin/pip install --quiet pythae==0.1.2

bench-setup: .venv-peers/bin/python

# SDV's TVAE and CTGAN for benchmarks/bench_tables_synth.py, in their own venv: torch first,
# pinned to the CPU build, so that sdv keeps it instead of pulling a CUDA one.
.venv-sdv/bin/python:
	$(PYTHON) -m venv .venv-sdv
	.venv-sdv/bin/pip install --quiet torch==2.13.0
	.venv-sdv/bin/pip install --quiet sdv

bench-sdv: .venv-sdv/bin/python

# A quick version of the speed benchmarks (a few minutes); see benchmarks/RESULTS.md.
bench: $(BIN)/vaekit bench-setup
	cd benchmarks && ../$(BIN)/python bench_train_speed.py --quick

clean:
	rm -rf runs build dist src/*.egg-info .pytest_cache docs/notes
