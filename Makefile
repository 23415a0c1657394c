# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install migrate demo run test test-postgres lint format bench bench-smoke clean

# pytest, run again once only if the interpreter itself crashed (SIGSEGV/SIGABRT): CPython 3.11 can
# segfault in contextvars under asgiref's context switching (seen about once in six full runs here, never
# a test's failure). faulthandler prints where it crashed; a test failure is never retried.
PYTEST = sh -c '"$$0" -X faulthandler -m pytest "$$@"; status=$$?; \
	if [ $$status -eq 139 ] || [ $$status -eq 134 ] || [ $$status -eq 245 ]; then \
		echo "pytest crashed (exit $$status, an interpreter crash, not a test failure): running the suite once more"; \
		"$$0" -X faulthandler -m pytest "$$@"; status=$$?; fi; exit $$status' $(PY)

# The scale-out back ends (CI machines have both on loopback).
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_URL_TEST ?= redis://127.0.0.1:6379/0

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py chatmodel_demo

# daphne is first in INSTALLED_APPS, so runserver serves ASGI (HTTP and websockets).
run: demo
	@echo "Chat page: http://$(HOST):$(PORT)/ (log in as demo / demo); admin: /admin/; API schema: /api/schema/"
	$(PY) manage.py runserver $(HOST):$(PORT)

# Debian's Chromium for the browser tests (tests/browser; Playwright's own browser download is not used).
# Installed with apt-get when missing (apt-get update only when apt does not know the package yet);
# without root or apt this fails with what to do, and so do the browser tests.
CHATMODEL_CHROMIUM ?= /usr/bin/chromium
export CHATMODEL_CHROMIUM
.PHONY: browser-deps
browser-deps:
	@if [ -x "$(CHATMODEL_CHROMIUM)" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "Chromium is missing at $(CHATMODEL_CHROMIUM) and there is no apt-get: install Chromium and retry" \
			"(or set CHATMODEL_CHROMIUM=/path/to/chromium)."; exit 1; fi; \
	SUDO=""; if [ "$$(id -u)" != 0 ]; then \
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
			echo "Chromium is missing at $(CHATMODEL_CHROMIUM); installing it needs root:" \
				"run 'sudo apt-get install -y chromium' and retry."; exit 1; fi; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-cache show chromium >/dev/null 2>&1 || $$SUDO apt-get update -q \
		|| { echo "apt-get update failed."; exit 1; }; \
	$$SUDO apt-get install -y -q chromium || { echo "apt-get install chromium failed."; exit 1; }; \
	[ -x "$(CHATMODEL_CHROMIUM)" ] || { echo "chromium is installed but $(CHATMODEL_CHROMIUM) is missing."; exit 1; }

# The multi-process scale-out tests need PostgreSQL + Redis: test-postgres runs them, this run deselects them.
# The browser tests (tests/browser) run here and in test-postgres: Chromium is installed first.
test: install browser-deps
	$(PY) -m ruff check .
	$(PYTEST) -m "not scaleout" $(PYTEST_ARGS)

# The same suite on PostgreSQL + Redis, the scale-out tests (several workers, tests/test_scaleout.py) included;
# fails (never skips) when they are not reachable.
test-postgres: install browser-deps
	$(PY) -c "import psycopg, sys; psycopg.connect('$(PG_URL)', connect_timeout=5).close()" \
		|| { echo "PostgreSQL is not reachable at $(PG_URL)"; exit 1; }
	$(PY) -c "import redis; redis.Redis.from_url('$(REDIS_URL_TEST)', socket_connect_timeout=5).ping()" \
		|| { echo "Redis is not reachable at $(REDIS_URL_TEST)"; exit 1; }
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL_TEST) $(PYTEST) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Benchmarks: scripts, not timed tests (docs/bench.md). `bench` measures everything (about 20 minutes, on a quiet
# machine) and writes bench/RESULTS.md; `bench-smoke` runs every script tiny (well under a minute) so they keep
# working, and writes bench/out/RESULTS-smoke.md. PostgreSQL rows use BENCH_POSTGRES_URL (default: the local server).
bench: install
	$(PY) -m bench

bench-smoke: install
	$(PY) -m bench --smoke

clean:
	rm -rf $(VENV) *.egg-info .pytest-db*.sqlite3*
