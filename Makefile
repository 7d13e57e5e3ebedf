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

demo: $(VENV)/.installed
	@echo "make demo: the synthetic training demo arrives with the training issue (#3)."
	@echo "Until then, try:  $(PY) scripts/model_table.py --paper"
	@exit 2

clean:
	rm -rf $(VENV) build *.egg-info
