# deep-events-dagster — every target sets up what a fresh machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BROWSER_STAMP := $(VENV)/.browser-stamp
# The browser test drives Debian's chromium through playwright's bundled driver; never
# `playwright install` (it downloads a browser build).
CHROMIUM ?= /usr/bin/chromium
HOME_DIR ?= .deep_events
PYTEST_ARGS ?=

.PHONY: install demo ui test test-fast bench lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the local CPU build (a plain requirement pulls GBs of CUDA).
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(BROWSER_STAMP): $(STAMP)
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
		echo "installing Debian's chromium for the browser test"; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	$(CHROMIUM) --version
	$(PY) -c "import playwright.sync_api"
	touch $(BROWSER_STAMP)

demo: install
	$(VENV)/bin/deep-events demo --home $(HOME_DIR)

ui: install
	$(VENV)/bin/deep-events ui --home $(HOME_DIR)

test: install $(BROWSER_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) -m benchmarks.run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(HOME_DIR) .pytest_cache .ruff_cache
