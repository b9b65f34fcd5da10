# cadx: two set-up commands, both self-contained on a fresh machine.
#   make demo  -> creates .venv, installs cadx with the demo extras, runs the main job on the built-in default
#   make test  -> installs the dev extras, runs ruff, the import contract, the tests and the docstring examples
# Every pip install is constrained by constraints.txt (exact torch/torchvision/ruff versions).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIP_INSTALL := $(PIP) install -q -c constraints.txt
DEMO_OUT ?= demo_out

.PHONY: demo test venv install install-dev lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

venv: $(PY)

# The demo runs inference through ONNX Runtime (`onnx`), Grad-CAM (`explain`), DICOM (`ct`) and U-Nets (`seg`).
install: $(PY)
	$(PIP_INSTALL) -e '.[onnx,explain,ct,seg]'

install-dev: $(PY)
	$(PIP_INSTALL) -e '.[dev]'

demo: install
	$(VENV)/bin/cadx demo all --out $(DEMO_OUT)

lint: install-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

# Tests plus every docstring example in the package (slow tests deselected by pyproject's addopts).
test: lint
	$(PY) -m pytest -q src/cadx tests --doctest-modules

bench: install-dev
	$(PY) benchmarks/bench_wsi.py --size 20000 --out bench_out
	$(PY) benchmarks/bench_inference.py --slide bench_out/synthetic_20000.tif

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache build src/*.egg-info
