# The README's two commands: `make demo` and `make test`. Both create .venv from scratch with only python3.
# Development requirements are PEP 735 dependency groups (pyproject.toml), installed with pip >= 25.1's
# `--group`: the venv's own pip is upgraded first, as the pip bundled with Python may be older.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed
# Every optional part, so the whole suite runs (bench has its own target).
EXTRAS := fastapi,redis,prometheus,otel
PYTEST_ARGS ?=

.PHONY: install test demo bench lint docs docs-serve dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "pip>=25.1"
	$(PIP) install -e ".[$(EXTRAS)]" --group test
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(PIP) install --group lint
	$(BIN)/ruff check src
	$(BIN)/mypy src

bench: $(STAMP)
	$(PIP) install -e ".[$(EXTRAS),bench]"
	$(BIN)/python bench/run.py

# The documentation site (MkDocs Material + mkdocstrings) into site/; --strict fails on any warning,
# broken links and missing references included.
docs: $(STAMP)
	$(PIP) install --group docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	$(PIP) install --group docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# Wheel and sdist into dist/, checked with twine.
dist: $(STAMP)
	$(PIP) install --group dist
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) build dist site *.egg-info src/*.egg-info .pytest_cache
