# obbws-jupyter: `make lab` (the main job) and `make test` (everything CI runs).
# Both set up a virtualenv under the repo on first use; nothing else is assumed installed.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: lab test unit integration notebooks browser browser-deps engine-deps lint bench bench-full bench-profile clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The kernelspec the notebooks record (name python3, display name "Python 3"), so JupyterLab
# does not mark them modified on opening; re-installed when this Makefile changes.
KERNEL := $(VENV)/share/jupyter/kernels/python3/kernel.json
$(KERNEL): $(STAMP) Makefile
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $(KERNEL)

# JupyterLab refuses to start as root unless told; containers and CI machines often are root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(KERNEL)
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks/quickstart.ipynb

# The lint first (ruff check, ruff format --check, mypy), so CI keeps it green; then tests/
# asserts behaviour, and `--nbval-lax notebooks` also runs every notebook cell by cell (nbval),
# so a notebook added without its own test still has to run clean.
test: $(KERNEL) browser-deps engine-deps lint
	$(PY) -m pytest tests notebooks --nbval-lax

# Debian's chromium for the browser tests (Playwright's own browser download is not used).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt) for the browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Real streaming engines for the sink tests (issue #9): the fixtures start them on free
# loopback ports; no mock stands in for them.
engine-deps:
	@command -v nats-server >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing nats-server and redis-server (apt) for the sink tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    nats-server redis-server >/dev/null; }

browser: $(KERNEL) browser-deps
	$(PY) -m pytest tests/browser

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP) engine-deps
	$(PY) -m pytest tests/integration

notebooks: $(KERNEL)
	$(PY) -m pytest tests/notebooks notebooks --nbval-lax

lint: $(STAMP)
	$(VENV)/bin/ruff check obbws_jupyter providers tests benchmarks tools
	$(VENV)/bin/ruff format --check obbws_jupyter providers tests benchmarks tools
	$(VENV)/bin/mypy

# Issue #8's five benchmarks in their --quick mode (about 10 minutes in all with the others),
# each writing its table into benchmarks/README.md; bench-full runs them at full length (the
# soak for 10 minutes; about 25 minutes); bench-profile samples where ingest time goes.
BENCH_QUICK ?= --quick

bench: $(STAMP) engine-deps
	$(PY) benchmarks/ingest.py $(BENCH_QUICK) --readme
	$(PY) benchmarks/latency.py $(BENCH_QUICK) --readme
	$(PY) benchmarks/fanout.py $(BENCH_QUICK) --readme
	$(PY) benchmarks/results.py $(BENCH_QUICK) --readme
	$(PY) benchmarks/soak_ingest.py $(BENCH_QUICK) --readme
	$(PY) benchmarks/sinks.py $(BENCH_QUICK) --readme
	$(PY) benchmarks/consumer.py $(BENCH_QUICK)
	$(PY) benchmarks/parquet_sink.py
	$(PY) benchmarks/store_ingest.py
	$(PY) benchmarks/provider_parse.py
	$(PY) benchmarks/broadcast.py
	$(PY) benchmarks/http_results.py
	$(PY) benchmarks/widget.py
	$(PY) benchmarks/chart.py

bench-full:
	$(MAKE) bench BENCH_QUICK=

bench-profile: $(STAMP)
	$(PY) benchmarks/profile_ingest.py --readme

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
