# hwcache-exporter: `make run` starts the exporter, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: run test lint typecheck unit debian-deps bench dist deb dashboard clean

# Without Debian's python3-venv, `python3 -m venv` fails half-way (a python, no pip):
# remove that, install the package, try again; pip is the target, so a broken venv is redone.
$(BIN)/pip:
	$(PYTHON) -m venv $(VENV) || (rm -rf $(VENV) && scripts/debian-packages.sh python3-venv && $(PYTHON) -m venv $(VENV))
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/hwcache-exporter $(ARGS)

debian-deps:
	scripts/debian-packages.sh prometheus chromium openssl systemd systemd-container debootstrap python3.11-venv podman runc prometheus-node-exporter-collectors jq openipmi ipmitool

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test debian-deps
	$(BIN)/pytest -q

test: lint typecheck unit

readme-table: $(VENV)/.installed
	$(BIN)/python -c "from collectors.registry import load_all; from exporter.cli import describe_defaults; print(describe_defaults(load_all()))"

bench: $(VENV)/.installed-test
	scripts/debian-packages.sh wrk prometheus-node-exporter
	$(BIN)/python bench/bench.py

dist: $(VENV)/.installed-test
	$(BIN)/python -m build --outdir dist .

# The Debian package: dist/hwcache-exporter_<version>_<arch>.deb (packaging/debian/build.sh).
# `make deb DEB_VERSION=0.1.0-2` sets the package version (upstream-revision).
deb:
	scripts/debian-packages.sh python3.11-venv
	DEB_VERSION='$(DEB_VERSION)' DEB_OUTDIR='$(or $(DEB_OUTDIR),dist)' packaging/debian/build.sh

# dashboards/hwcache-exporter.json from dashboards/generate.py (a test checks it is current).
dashboard: $(VENV)/.installed
	$(BIN)/python -m dashboards.generate

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
