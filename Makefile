# The whole set-up is `make demo` and `make test`; both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers; CI machines have 2 cores.
TEST_WORKERS ?= 2

.PHONY: demo test venv clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests

# Trains configs/synthetic.py on the CPU into runs/demo and prints the results table (rerunning resumes, or
# just prints the table of a finished run; `rm -rf runs/demo` to start over).
demo: $(VENV)/.installed
	JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m vivit_jax.main --config=configs/synthetic.py --workdir=runs/demo

clean:
	rm -rf $(VENV) build *.egg-info
