# obbws-jupyter: `make lab` (the main job) and `make test` (everything CI runs).
# Both set up a virtualenv under the repo on first use; nothing else is assumed installed.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: lab test unit integration notebooks lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (obbws)" >/dev/null
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/quickstart.ipynb

test: $(STAMP)
	$(PY) -m pytest tests

unit: $(STAMP)
	$(PY) -m pytest tests/unit

integration: $(STAMP)
	$(PY) -m pytest tests/integration

notebooks: $(STAMP)
	$(PY) -m pytest tests/notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check obbws_jupyter providers tests benchmarks
	$(VENV)/bin/ruff format --check obbws_jupyter providers tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/store_ingest.py
	$(PY) benchmarks/demo_parse.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
