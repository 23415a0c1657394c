# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install migrate demo run test test-postgres lint format bench bench-smoke clean

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
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# The same suite on PostgreSQL + Redis; fails (never skips) when they are not reachable.
test-postgres: install
	$(PY) -c "import psycopg, sys; psycopg.connect('$(PG_URL)', connect_timeout=5).close()" \
		|| { echo "PostgreSQL is not reachable at $(PG_URL)"; exit 1; }
	$(PY) -c "import redis; redis.Redis.from_url('$(REDIS_URL_TEST)', socket_connect_timeout=5).ping()" \
		|| { echo "Redis is not reachable at $(REDIS_URL_TEST)"; exit 1; }
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_URL_TEST) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) *.egg-info .pytest-db*.sqlite3*
