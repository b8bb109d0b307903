# The front door: `make demo`, `make test`, `make lab`. Each does the whole set-up first and is
# quick when nothing changed (the venv is rebuilt only when pyproject.toml or setup.py change).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ncd-installed
# torch is pinned to the CPU build that lies on this disk; the package's own range (<2.15)
# then installs nothing more, so no multi-GB CUDA build is ever pulled.
TORCH  ?= torch==2.13.0

.PHONY: setup system demo test lint lab bench clean

setup: $(STAMP) system

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

system:
	@scripts/system-deps.sh

demo: setup
	$(VENV)/bin/ncd demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	@scripts/system-deps.sh --browser
	$(PY) -m pytest

# Jupyter refuses to start as root unless told to (containers and CI machines run as root).
lab: setup
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .hypothesis
