# City Panorama developer tasks.  `make` (or `make help`) lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
VENV_PY     := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test TEST_WORKERS=4` runs pytest-xdist workers: the browser tests one after another on one of
# them, every other test file whole on one (tests/conftest.py groups them). Serial by default: on two
# cores two workers took as long (20 min) as one, the browser tests being CPU-bound
TEST_WORKERS ?= 0
HOST        ?=
PORT        ?=
BENCHES     := $(sort $(wildcard benchmarks/bench_*.py))

.PHONY: help venv run test bench clean

help: ## show this help
	@echo "City Panorama - make targets:"
	@echo "  venv    create .venv (python >= 3.11) and pip install -e '.[test]' (only when pyproject.toml changed)"
	@echo "  run     start the dashboard + live simulator on 127.0.0.1:8050 (make run HOST=0.0.0.0 PORT=8060)"
	@echo "  test    ruff check (pyproject.toml [tool.ruff]), install/start test services"
	@echo "          (scripts/ensure_test_env.sh), then pytest --headless"
	@echo "          (extra pytest arguments: make test PYTEST_ARGS='-k map -x'; TEST_WORKERS=0 runs serially)"
	@echo "  bench   run every benchmarks/bench_*.py"
	@echo "  clean   remove var/ (the embedded store) and caches (keeps .venv)"

venv: $(STAMP) ## create the virtualenv and install the project

# Re-installs only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: City Panorama needs Python >= 3.11, but '$(PYTHON)' is $$($(PYTHON) -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo 'not runnable')." >&2; \
	  echo "       Install a newer python3 or run: make PYTHON=/path/to/python3.11 ..." >&2; \
	  exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || bash scripts/ensure_apt.sh python3-venv
	@test -x $(VENV_PY) || { echo "+ $(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -e '.[test]'
	@touch $@

run: venv ## start the dashboard
	$(VENV)/bin/panorama run $(if $(strip $(HOST)),--host $(HOST)) $(if $(strip $(PORT)),--port $(PORT))

test: export PANORAMA_REQUIRE_SERVICES := 1
test: venv ## run the test suite
	$(VENV)/bin/ruff check .
	bash scripts/ensure_test_env.sh
	$(VENV_PY) -m pytest --headless -q --durations=25 $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

bench: venv ## run the benchmarks
	@if [ -z "$(BENCHES)" ]; then echo "no benchmarks/bench_*.py found"; fi
	@set -e; for b in $(BENCHES); do echo "+ $(VENV_PY) $$b"; $(VENV_PY) $$b; done

clean: ## remove the embedded store and caches (not the venv)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache build
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
