# kanlens developer commands. `make demo` and `make test` work from a clean clone: they create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override e.g. `make TORCH_SPEC="torch" test` on a machine with a GPU.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.kanlens-installed

.PHONY: env demo test test-slow lint docs bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Small KANs gain nothing from intra-op threads, and on a busy machine spinning threads slow them down badly.
demo: env
	OMP_NUM_THREADS=1 $(PY) -m kanlens.demo --out runs/demo --overwrite

# Two pytest workers with one torch thread each use both cores without oversubscribing them.
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider -n 2

test: env
	$(PYTEST) -m "not slow"

test-slow: env
	$(PYTEST) -m slow

# Strict docs build (every warning is an error); installs the docs extra on first use.
docs: env
	$(PY) -c "import mkdocs, material, mkdocstrings" 2>/dev/null || $(PY) -m pip install --quiet -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

lint: env
	$(VENV)/bin/ruff check kanlens tests benchmarks examples

bench: env
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) runs build *.egg-info
