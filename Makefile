# The README's two commands: `make demo` and `make test`. Both create .venv from scratch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test fuzz demo bench soak lint mutants clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# A long property-based search (tests/test_properties.py; about 5,000 requests per property).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider -o timeout=0 tests/test_properties.py tests/test_paths.py

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[lint]"
	$(BIN)/ruff check src
	$(BIN)/mypy src

# Options: make bench BENCH_QUICK=1 (smoke run), BENCH_ONLY=steady,e2e_standard, BENCH_E2E=0 (see bench/run.py).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(BIN)/python bench/run.py

# Not part of `make test`: 60 s of steady load on the example service (4 workers) and its own
# Redis; SOAK_SECONDS changes the duration. See bench/soak.py for what it reports.
soak: $(STAMP)
	$(BIN)/python bench/soak.py

# One-line mutants of the security checks against their tests (minutes; not part of test or CI).
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
