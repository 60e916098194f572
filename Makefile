# Two set-up commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs
# what it needs by itself. torch is pinned first so pip takes the CPU build from local disk instead of a
# multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TORCH ?= torch==2.13.0

.PHONY: test lint format demo bench bench-record slow clean chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

# headless Chromium for the report's end-to-end test (Debian's package; needs root, else the test says how)
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  ( [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ) || \
	  echo "note: could not install chromium (sudo apt-get install chromium); tests/test_report.py will fail and say so"

LINTED := src tests benchmarks examples docs/figures mkdocs_hooks.py

# ruff (lint + format check) and mypy on src/ (config in pyproject.toml); `make format` applies ruff's fixes
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

test: $(STAMP) chromium lint
	$(PY) -m pytest -q -p no:cacheprovider

slow: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m slow

demo: $(STAMP)
	$(VENV)/bin/diffdensity demo --out demo_out

PEERS := k-diffusion flow_matching torchsde trampoline  # the `bench` extra, with --no-deps: torch untouched

bench: $(STAMP)
	$(PY) -m pip install -q --no-deps $(PEERS)
	$(PY) benchmarks/run_all.py

bench-record: $(STAMP)
	$(PY) -m pip install -q --no-deps $(PEERS)
	DIFFDENSITY_BENCH_RECORD=1 $(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
