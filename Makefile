# The two commands the README promises: `make demo` (main job) and `make test` (whole suite).
# Each creates the virtual environment from requirements.txt when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= /tmp/spg_jax_demo

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

.PHONY: venv demo test
venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m experiments.main --config=experiments/configs/mnist1d_protocol.py --workdir=$(WORKDIR)

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q tests
