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

.PHONY: install test fuzz demo bench soak lint mutants docs docs-serve dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "pip>=25.1"
	$(PIP) install -e ".[$(EXTRAS)]" --group test
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A long property-based search (tests/test_properties.py; about 5,000 requests per property).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider -o timeout=0 tests/test_properties.py tests/test_paths.py

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(PIP) install --group lint
	$(BIN)/ruff check src bench tests tools examples
	$(BIN)/mypy src

# Options: make bench BENCH_QUICK=1 (smoke run), BENCH_ONLY=steady,e2e_standard, BENCH_E2E=0 (see bench/run.py).
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

# Not part of `make test`: 60 s of steady load on the example service (4 workers) and its own
# Redis; SOAK_SECONDS changes the duration. See bench/soak.py for what it reports.
soak: $(STAMP)
	$(BIN)/python bench/soak.py

# One-line mutants of the security checks against their tests (minutes; not part of test or CI).
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py

clean:
	rm -rf $(VENV) build dist site *.egg-info src/*.egg-info .pytest_cache
