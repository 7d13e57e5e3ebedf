# The whole set-up is `make demo` and `make test`; both create .venv when it is missing. `make demo` installs what
# running needs (vivit_jax and its commands, .venv/bin/vivit-*); `make test` adds the test extra (pytest, and
# torch, transformers and ONNX Runtime, which the tests compare against).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers; CI machines have 2 cores. An idle worker takes queued tests from a busy one (worksteal)
# and the longest tests start first (tests/conftest.py). The 20 slowest tests are listed at the end of each run.
TEST_WORKERS ?= 2
# pip compiles the installed modules to bytecode one at a time; installing with --no-compile and compiling on
# every core is 20 s shorter on 2 cores. Like pip, it skips modules this Python cannot compile (torch ships one
# written for Python 3.12). Compiling .venv up front beats leaving it to the first imports: where
# PYTHONDONTWRITEBYTECODE is cleared so that they keep it, concurrent processes compile the same modules, and
# tests/test_main.py, tests/cli, tests/experiments/test_benchmarks.py and tests/train/test_loop.py took 204 s on
# 2 workers instead of 158 s. It leaves out what nothing imports: the packages' own test suites, pip, and the
# 200-odd model families of transformers other than ViT and ViViT, 5,190 of 20,542 modules (the whole suite,
# run with PYTHONPYCACHEPREFIX, imported none of them): 29 s -> 20 s on 2 cores. A module left out still works;
# it is compiled when first imported.
SKIP := site-packages/(.+/)?(tests|pip|onnx/backend/test)/|site-packages/transformers/models/(?!auto/|encoder_decoder/|vit/|vivit/|__init__)
COMPILE := $(PY) -c "import compileall, re, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0, rx=re.compile(r'$(SKIP)'))"
NEW_VENV := test -x $(PY) || $(PYTHON) -m venv $(VENV)

.PHONY: demo test venv clean

$(VENV)/.installed-run: setup.cfg pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e .
	$(COMPILE)
	touch $@

# The test extra with everything running needs, in one resolution (on a new .venv, as CI makes it, one install
# instead of two: 29 s instead of 41 s).
$(VENV)/.installed-test: setup.cfg pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test]'
	$(COMPILE)
	touch $(VENV)/.installed-run $@

venv: $(VENV)/.installed-run

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist=worksteal --durations=20 tests

# Trains configs/synthetic.py on the CPU into runs/demo and prints the results table and where the run's files
# are (rerunning resumes, or just prints the table of a finished run; `rm -rf runs/demo` to start over).
demo: $(VENV)/.installed-run
	JAX_PLATFORMS=cpu $(VENV)/bin/vivit-train --config=configs/synthetic.py --workdir=runs/demo

clean:
	rm -rf $(VENV) build *.egg-info
