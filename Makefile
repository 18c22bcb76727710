# Every target creates its own environment in .venv from nothing but python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SEEDS ?= 1

.PHONY: venv test test-fast lint demo benchmark clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# Everything but the tests marked slow (pyproject.toml): a few minutes.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# The whole method on the built-in synthetic data; finished stages are reused on rerun.
demo: $(STAMP)
	$(PY) -m d3d_tf.demo --out_dir=demo_out --seeds=$(SEEDS)

benchmark: $(STAMP)
	$(PY) -m d3d_tf.benchmark --json=benchmark.json

lint: $(STAMP)
	$(VENV)/bin/ruff check d3d_tf tests

clean:
	rm -rf $(VENV) demo_out .pytest_cache
