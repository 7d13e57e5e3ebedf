# The whole set-up is `make demo` and `make test`; both create .venv when it is missing. `make demo` installs what
# running needs (vivit_jax and its commands, .venv/bin/vivit-*); `make test` adds the test extra (pytest, and
# torch, transformers and ONNX Runtime, which the tests compare against).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers; CI machines have 2 cores. An idle worker takes queued tests from a busy one (worksteal)
# and the longest tests start first (tests/conftest.py). The 20 slowest tests are listed at the end of each run.
TEST_WORKERS ?= 2
# Python compiles each module to bytecode the first time it is imported and keeps the result beside it, so only
# what runs is compiled, and once. Where the environment sets PYTHONDONTWRITEBYTECODE nothing would be kept and
# every process would compile its imports again (the tests' libraries: 23 s to import instead of 10), so the
# commands below clear it; pip installs without compiling (--no-compile: compiling all 20,000 modules of
# .venv took 30 s on 2 cores, the ones the tests import 13 s).
KEEP_BYTECODE := PYTHONDONTWRITEBYTECODE=
NEW_VENV := test -x $(PY) || $(PYTHON) -m venv $(VENV)

.PHONY: demo test venv clean

$(VENV)/.installed-run: setup.cfg pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e .
	touch $@

# The test extra with everything running needs, in one resolution (on a new .venv, as CI makes it, one install
# instead of two: 29 s instead of 41 s).
$(VENV)/.installed-test: setup.cfg pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test]'
	touch $(VENV)/.installed-run $@

venv: $(VENV)/.installed-run

test: $(VENV)/.installed-test
	$(KEEP_BYTECODE) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist=worksteal --durations=20 tests

# Trains configs/synthetic.py on the CPU into runs/demo and prints the results table and where the run's files
# are (rerunning resumes, or just prints the table of a finished run; `rm -rf runs/demo` to start over).
demo: $(VENV)/.installed-run
	$(KEEP_BYTECODE) JAX_PLATFORMS=cpu $(VENV)/bin/vivit-train --config=configs/synthetic.py --workdir=runs/demo

clean:
	rm -rf $(VENV) build *.egg-info
