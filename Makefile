# Two entry points for a fresh clone; each creates .venv and installs what it needs.
#   make demo   synthetic real/fake pairs through exact P&R, with a stage table
#   make test   lint (ruff), types (mypy) and the test suite (offline)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-slow bench clean

$(VENV)/.base: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[bench]"
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) -e ".[test,faiss,hnswlib,scann,bench,vision,torchmetrics,fidelity,dinov2,clip]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/eprmetrics demo --quiet

test: $(VENV)/.test
	$(PY) -m ruff check eprmetrics tests benchmarks
	$(PY) -m ruff format --check eprmetrics tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q
	PYTHON=$(PY) bash benchmarks/gpu_suite.sh --device cpu --smoke

test-slow: $(VENV)/.test
	$(PY) -m pytest -q --runslow

bench: $(VENV)/.test
	$(PY) -m benchmarks.bench_exact

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
