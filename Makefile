# camexp: every target sets itself up (a virtual environment in .venv with the pinned stack).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench bench-gpu clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## make install: create .venv with the pinned, tested versions (constraints.txt)
install: $(STAMP)

## make demo: train the small CAM network on the embedded synthetic data (CPU), test it, draw its maps
demo: $(STAMP)
	$(PY) -m camexp.train

## make test: the whole test suite, slow end-to-end runs included
test: $(STAMP)
	$(PY) -m pytest

## make test-fast: the unit tests only
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

## make lint: ruff
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

## make bench: speed comparisons printed as ratios measured side by side
bench: $(STAMP)
	$(PY) bench/bench_training.py
	$(PY) bench/bench_data.py
	$(PY) bench/bench_localization.py
	$(PY) bench/bench_methods.py
	$(PY) bench/bench_posthoc.py
	$(PY) bench/bench_transformers.py

## make bench-gpu: bf16 / channels-last / compile and CPU vs GPU JPEG decoding on one GPU (says so without one)
bench-gpu: $(STAMP)
	$(PY) bench/bench_gpu.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
