# Two commands: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck browser unit e2e bench chaos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m connectors.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The web page's browser test drives Debian's Chromium and its driver. Installed here when missing and we can
# (root, with apt); otherwise that one test skips and says how to enable it. Never a browser of a tool's own.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium and chromium-driver for the web page's browser test"; \
			(timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium chromium-driver) \
				>/dev/null 2>&1 || echo "could not install chromium chromium-driver; the browser test will skip"; \
		else \
			echo "no /usr/bin/chromium: the browser test will skip (apt-get install chromium chromium-driver)"; \
		fi; \
	fi

# Two workers, each test file on one of them (module-scoped fixtures such as the own-project venv run once).
test: lint typecheck browser
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) -m benchmarks

# 100,000 records through the doubler and the archiver under faults, kills, a fake restart and a 60 s outage
# (~5 minutes; not part of `make test`).
chaos: $(STAMP)
	$(PY) -m benchmarks.chaos

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
