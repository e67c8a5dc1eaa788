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

.PHONY: venv demo test espeak
venv: $(VENV)/.installed espeak

# espeak-ng (Debian package) synthesises the spoken-digits audio set; installed only if
# missing, as root or through sudo; without it that data set names this command.
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || apt-get install -y espeak-ng >/dev/null 2>&1 \
	  || sudo -n apt-get install -y espeak-ng >/dev/null 2>&1 \
	  || echo "warning: espeak-ng is not installed (apt-get install -y espeak-ng); the spoken-digits data set needs it"

demo: $(VENV)/.installed
	$(PY) -m experiments.main --config=experiments/configs/mnist1d_protocol.py --workdir=$(WORKDIR)

test: $(VENV)/.installed espeak
	$(PY) -m pytest -n 2 -q tests
