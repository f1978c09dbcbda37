# Every target bootstraps the virtual environment it needs; a second run with nothing
# changed reinstalls nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
SOURCES := pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/*.py)

.PHONY: all demo test bench clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Editable install: cffi builds earwitness/_native*.so in place, so tests see the sources.
$(STAMP): $(SOURCES) | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	-$(PY) -m pip install -q 'aubio>=0.4.9,<0.5' || echo "aubio did not install; its benchmark row is skipped"
	touch $@

demo: $(STAMP)
	$(PY) -m simulator.demo

test: $(STAMP)
	$(PY) -m pytest -q

# The quick loop: no broker, database, node or server process, nothing slower than ~5 s.
.PHONY: test-fast
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not integration and not hil and not browser and not cluster"

bench: $(BENCH_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info earwitness/_native*.so earwitness/_native.c earwitness/_native.o .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# make lint: ruff (style, imports, bugbear, complexity), the import contracts of README's
# Layout (lint-imports) and mypy; each runs, the target fails if any failed.
LINT_STAMP := $(VENV)/.installed-lint

.PHONY: lint

$(LINT_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,lint]'
	touch $@

lint: $(LINT_STAMP)
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/lint-imports --no-cache || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status
