# Two entry points: `make demo` runs the demo (hub and nodes as processes), `make test` the suite.
# Each creates .venv and installs the project on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export FLWR_TELEMETRY_ENABLED=0
export RAY_USAGE_STATS_ENABLED=0

.PHONY: demo test test-deployment lint bench clean chromium

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sandbox demo

# The browser tests (tests/web) drive Debian's chromium; install it once, quietly (as root, or
# through sudo when there is one).
SUDO := $(shell test "$$(id -u)" = 0 || command -v sudo)
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup --durations=10 -m "not deployment"

# Training over real Flower SuperLink/SuperNode processes (minutes per test on 2 cores).
test-deployment: $(STAMP)
	$(BIN)/python -m pytest -q -m deployment --durations=10

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
