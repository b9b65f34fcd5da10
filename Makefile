# cadx: two set-up commands, both self-contained on a fresh machine.
#   make demo  -> creates .venv, installs cadx, runs the main job on the built-in default
#   make test  -> installs the dev extras, runs the tests and the import contract
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEMO_OUT ?= demo_out

.PHONY: demo test venv install install-dev lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

venv: $(PY)

install: $(PY)
	$(PIP) install -q -e .

install-dev: $(PY)
	$(PIP) install -q -e '.[dev]'

demo: install
	$(VENV)/bin/cadx demo --out $(DEMO_OUT)

test: install-dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

bench: install-dev
	$(PY) benchmarks/bench_wsi.py --size 20000 --out bench_out
	$(PY) benchmarks/bench_inference.py --slide bench_out/synthetic_20000.tif

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build src/*.egg-info
