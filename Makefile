# sty: `make build` renders outputs/ from pigsty.yml; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STY := $(VENV)/bin/sty
PY := $(VENV)/bin/python
INV ?= pigsty.yml
HOST ?=

.PHONY: build check diff test system-packages unit lint lint-code lint-imports outputs-check bench clean venv testbed testbed-down apply e2e faults

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

# the whole suite: the Debian packages it needs, code style and layers, committed outputs up to date, real
# programs judging every bundle, unit tests, real-program tests and the end-to-end testbed run
test: system-packages $(VENV)/.installed lint-code outputs-check lint
	$(PY) -m pytest -q --ignore=tests/test_lint.py

# the real programs that judge the generated files, and the testbed's tools (Debian 12; installs what is missing)
system-packages:
	.ci/packages

# real programs judge every bundle: outputs/ and every Pigsty example inventory (needs root)
lint: $(VENV)/.installed
	$(STY) lint -o outputs
	$(STY) build -q -i $(TESTBED_INV) -o $(TESTBED_OUT)
	$(STY) lint -o $(TESTBED_OUT)
	$(PY) -m pytest -q tests/test_lint.py

unit: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

lint-code: $(VENV)/.installed lint-imports
	$(VENV)/bin/ruff check sty compiler apply tests setup.py
	$(VENV)/bin/ruff format --check sty compiler apply tests setup.py

# the layers (docs/architecture.md), judged by import-linter on the package as it installs
lint-imports: $(VENV)/.installed
	@rm -rf build/imports build/lib build/bdist.* && $(VENV)/bin/pip install --quiet --no-deps --target build/imports . 2>/dev/null
	cd build/imports && PYTHONPATH=. ../../$(VENV)/bin/lint-imports --no-cache --config ../../pyproject.toml

# committed outputs/ must be exactly what a build of the shipped inventory produces
outputs-check: $(VENV)/.installed
	@$(STY) diff -i $(INV) --stat >/dev/null 2>&1 || { $(STY) diff -i $(INV) --stat; echo "outputs/ is stale: run make build and commit"; exit 1; }

# the local multi-host testbed (systemd-nspawn hosts in private network namespaces; needs root)
TESTBED_INV ?= conf/testbed.yml
TESTBED_OUT ?= build/testbed/outputs
testbed: $(VENV)/.installed
	$(PY) tests/testbed up --inventory $(TESTBED_INV)
	$(STY) build -i $(TESTBED_INV) -o $(TESTBED_OUT)

testbed-down: $(VENV)/.installed
	$(PY) tests/testbed down --inventory $(TESTBED_INV)

# ship bundles: `make apply HOST=10.10.10.11` (or a cluster, a group, all); OUT=build/testbed/outputs for the testbed.
# It shows the plan and asks; YES=1 applies it without asking (a script, a CI job: no terminal to ask on)
OUT ?= outputs
apply: $(VENV)/.installed
	$(STY) apply -o $(OUT) $(if $(YES),--yes) $(or $(HOST),all)

e2e: $(VENV)/.installed
	$(PY) -m pytest -q -m e2e

# day-2 operations and faults on the testbed, one line of figures per scenario (part of `make test`)
faults: $(VENV)/.installed
	$(PY) -m pytest -q -m faults

# where the time goes, per phase and per host (about 10 min); `make bench BENCH_ARGS=--quick` for 100 and 1000 hosts;
# then the floors under the targets, measured on this machine (about 1 min; `FLOORS_ARGS=--check-hosts 0` is 40 s)
bench: $(VENV)/.installed
	$(PY) tests/bench.py $(BENCH_ARGS)
	$(PY) tests/bench_floors.py $(FLOORS_ARGS)

# docs/compatibility.md's "Differences from Pigsty" section, generated from docs/pigsty-differences.yml
.PHONY: compat-doc
compat-doc: $(VENV)/.installed
	$(PY) tests/compat_doc.py

clean:
	rm -rf .sty build .pytest_cache
