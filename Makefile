# sty: `make build` renders outputs/ from pigsty.yml; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STY := $(VENV)/bin/sty
PY := $(VENV)/bin/python
INV ?= pigsty.yml
HOST ?=

.PHONY: build check diff test unit lint-code outputs-check bench clean venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

build: $(VENV)/.installed
	$(STY) build -i $(INV)

check: $(VENV)/.installed
	$(STY) check -i $(INV)

diff: $(VENV)/.installed
	$(STY) diff -i $(INV)

# the whole suite: code style, fast unit tests, real-program checks, committed outputs up to date
test: $(VENV)/.installed lint-code outputs-check
	$(PY) -m pytest -q

unit: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

lint-code: $(VENV)/.installed
	$(VENV)/bin/ruff check compiler apply tests
	$(VENV)/bin/ruff format --check compiler apply tests

# committed outputs/ must be exactly what a build of the shipped inventory produces
outputs-check: $(VENV)/.installed
	@$(STY) diff -i $(INV) --stat >/dev/null 2>&1 || { $(STY) diff -i $(INV) --stat; echo "outputs/ is stale: run make build and commit"; exit 1; }

bench: $(VENV)/.installed
	$(PY) tests/bench.py

clean:
	rm -rf .sty build .pytest_cache
