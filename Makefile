# kanlens developer commands. `make demo` and `make test` work from a clean clone: they create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override e.g. `make TORCH_SPEC="torch" test` on a machine with a GPU.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.kanlens-installed

.PHONY: env demo test test-slow lint bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: env
	$(PY) -m kanlens.demo --out runs/demo

test: env
	$(PY) -m pytest -m "not slow" -q -p no:cacheprovider

test-slow: env
	$(PY) -m pytest -m slow -q -p no:cacheprovider

lint: env
	$(VENV)/bin/ruff check kanlens tests benchmarks examples

bench: env
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) runs build *.egg-info
