# Two commands do everything on a fresh machine: `make run` and `make test`.
# The default interpreter is Python 3.12 (pyenv's when there is one): CPython 3.11 can crash in contextvars under
# LiteLLM's stream finalizers (issue 19). 3.11 is still supported; `make test PYTHON=python3.11` uses it.
# pyenv's interpreter of a version (a directory, or nothing), found with or without pyenv on PATH.
pyenv_prefix = $(firstword $(shell pyenv prefix $(1) 2>/dev/null | head -n1) $(wildcard $(HOME)/.pyenv/versions/$(1).*))
PYENV_312 := $(call pyenv_prefix,3.12)
PYTHON ?= $(firstword $(if $(PYENV_312),$(wildcard $(PYENV_312)/bin/python3)) $(shell command -v python3.12 2>/dev/null) python3)
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV ?= .venv
PY := $(VENV)/bin/python
# One stamp per interpreter version: switching PYTHON rebuilds the virtualenv.
STAMP := $(VENV)/.installed-$(PYVER)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install migrate demo run test test-postgres lint typecheck format docs matrix bench bench-smoke clean

# faulthandler prints the Python stack if the interpreter itself crashes.
PYTEST = $(PY) -X faulthandler -m pytest

# The scale-out back ends (CI machines have both on loopback).
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_URL_TEST ?= redis://127.0.0.1:6379/0

$(STAMP): pyproject.toml
	@test -n "$(PYVER)" || { echo "No Python at '$(PYTHON)': install Python 3.12 (or set PYTHON=...)."; exit 1; }
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ]; then \
		echo "$(VENV) runs another Python than $(PYTHON) ($(PYVER)): recreating it"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py chatmodel_demo --user demo

# daphne is first in INSTALLED_APPS, so runserver serves ASGI (HTTP and websockets).
run: demo frontend
	@echo "Chat page: http://$(HOST):$(PORT)/ (log in as demo / demo); React page: /react/; admin: /admin/; API schema: /api/schema/"
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

# The React example page (example_project/frontend, docs/react-example.md): its npm packages come from the registry
# (`npm ci`: exactly package-lock.json) and Vite builds it into example_project/static/example/react/ (git-ignored),
# where Django serves it. Each step runs only when its output is missing or older than its inputs.
FRONTEND := example_project/frontend
FRONTEND_BUILD := example_project/static/example/react/react-chat.js
.PHONY: frontend
frontend: $(FRONTEND_BUILD)

$(FRONTEND)/node_modules/.package-lock.json: $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	@command -v npm >/dev/null 2>&1 \
		&& node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a == 20 && b >= 19) ? 0 : 1)' \
		|| { echo "The React page needs Node.js 20.19+ and npm on PATH (found: $$(node --version 2>/dev/null || echo none))."; exit 1; }
	cd $(FRONTEND) && npm ci --no-audit --no-fund
	@touch $@

$(FRONTEND_BUILD): $(FRONTEND)/node_modules/.package-lock.json $(FRONTEND)/vite.config.js $(shell find $(FRONTEND)/src -type f)
	cd $(FRONTEND) && npm run build
	@touch $@

# The Node tests' packages (tests/node: the `ai` package, whose DefaultChatTransport tests/ai_sdk runs against a live
# server), from the npm registry with `npm ci` (exactly package-lock.json); again only when that lock file is newer.
NODE_TESTS := tests/node
.PHONY: node-deps
node-deps: $(NODE_TESTS)/node_modules/.package-lock.json

$(NODE_TESTS)/node_modules/.package-lock.json: $(NODE_TESTS)/package.json $(NODE_TESTS)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "The Node tests need Node.js 18+ and npm on PATH."; exit 1; }
	cd $(NODE_TESTS) && npm ci --no-audit --no-fund
	@touch $@

# Lint, format check and type check first (seconds), then the suite.
# The multi-process scale-out tests need PostgreSQL + Redis: test-postgres runs them, this run deselects them.
# The browser tests (tests/browser) run here and in test-postgres: Chromium is installed first.
test: lint typecheck browser-deps frontend node-deps
	$(PYTEST) -m "not scaleout" $(PYTEST_ARGS)

# The same suite on PostgreSQL + Redis, the scale-out tests (several workers, tests/test_scaleout.py) included;
# fails (never skips) when they are not reachable.
test-postgres: install browser-deps frontend node-deps
	$(PY) -c "import psycopg, sys; psycopg.connect('$(PG_URL)', connect_timeout=5).close()" \
		|| { echo "PostgreSQL is not reachable at $(PG_URL)"; exit 1; }
	$(PY) -c "import redis; redis.Redis.from_url('$(REDIS_URL_TEST)', socket_connect_timeout=5).ping()" \
		|| { echo "Redis is not reachable at $(REDIS_URL_TEST)"; exit 1; }
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL_TEST) $(PYTEST) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# mypy: strict on the public modules, the defaults on the rest ([tool.mypy] in pyproject.toml).
typecheck: install
	$(PY) -m mypy

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The manual (docs/, mkdocs.yml) into site/; strict: a broken link or anchor fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# The support matrix (noxfile.py): the lowest (Python 3.11, Django 5.2, DRF 3.15) and the highest (Python 3.13,
# Django 6.1, DRF 3.18) supported combination, each in its own virtualenv under .nox/, on SQLite.
# nox looks for python3.11 / python3.13 on PATH: pyenv's are put first when pyenv is there.
empty :=
MATRIX_PATH := $(subst $(empty) $(empty),:,$(foreach v,3.11 3.13,$(addsuffix /bin,$(call pyenv_prefix,$(v)))))
matrix: install
	PATH="$(MATRIX_PATH)$(if $(MATRIX_PATH),:)$$PATH" $(VENV)/bin/nox $(NOX_ARGS)

# Benchmarks: scripts, not timed tests (docs/bench.md). `bench` measures everything (about 35 minutes, on a quiet
# machine) and writes bench/RESULTS.md; `bench-smoke` runs every script tiny (well under a minute) so they keep
# working, and writes bench/out/RESULTS-smoke.md. PostgreSQL rows use BENCH_POSTGRES_URL (default: the local server).
bench: install
	$(PY) -m bench

bench-smoke: install
	$(PY) -m bench --smoke

clean:
	rm -rf $(VENV) .nox site *.egg-info .pytest-db*.sqlite3* $(FRONTEND)/node_modules $(dir $(FRONTEND_BUILD)) $(NODE_TESTS)/node_modules
