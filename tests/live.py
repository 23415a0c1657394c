"""Real worker processes of the example project, for tests that talk to them over HTTP and websockets.

``live_site()`` gives the workers a back end of their own that the test process can also read:
on PostgreSQL (``DATABASE_URL`` of the test run) a fresh database on that server, dropped at the
end; otherwise a SQLite file. With ``REDIS_URL`` the workers share a Redis channel layer on a
dedicated Redis database number, flushed before and after; otherwise each worker has the
in-memory layer (so only one worker makes sense). ``Site.start("daphne", "uvicorn")`` starts ASGI
workers on free loopback ports and waits until each accepts connections; every process is
stopped when the context ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Migrate, seed the demo chat models (offline model), and print a DRF token for user "alice".
SETUP = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
call_command("migrate", verbosity=0)
call_command("chatmodel_demo", "--no-user", verbosity=0)
user, _ = get_user_model().objects.get_or_create(username="alice")
print(Token.objects.get_or_create(user=user)[0].key)
"""

_names = itertools.count(1)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_postgres(url: str | None) -> bool:
    """True for a postgres:// (or postgresql://) DATABASE_URL."""
    return bool(url) and urlsplit(url).scheme.split("+")[0] in ("postgres", "postgresql", "pgsql")


def with_path(url: str, path: str) -> str:
    """``url`` with its path (database name or number) replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, parts.fragment))


def iter_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The ``data`` of each Server-Sent Event, as it arrives."""
    data = None
    for line in lines:
        if not line:
            if data is not None:
                yield json.loads(data)
            data = None
        elif line.startswith("data: "):
            data = line[len("data: ") :]


class Worker:
    """One ASGI server process serving the example project."""

    def __init__(self, name: str, port: int, process: subprocess.Popen, log: Path, token: str) -> None:
        self.name = name
        self.port = port
        self.process = process
        self.log = log
        self.token = token
        self.http = f"http://127.0.0.1:{port}"

    def __repr__(self) -> str:
        return f"<Worker {self.name} :{self.port} pid {self.process.pid}>"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client of this worker, authenticated with the site's token."""
        return httpx.Client(base_url=self.http, headers={"Authorization": f"Token {self.token}"}, timeout=timeout)

    def ws_url(self, session_uuid: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chatmodel/sessions/{session_uuid}/"

    def socket(self, session_uuid: str):
        """A websocket on the session (``async with``). Not a browser: the token goes in a header, with an Origin."""
        return connect(
            self.ws_url(session_uuid),
            additional_headers={"Authorization": f"Token {self.token}"},
            origin=self.http,
            open_timeout=15,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or the OOM killer takes a worker."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Site:
    """A back end (database, channel layer, a user's token) and the workers started on it."""

    def __init__(self, env: dict[str, str], token: str, tmp: Path) -> None:
        self.env = env
        self.token = token
        self.tmp = tmp
        self.workers: list[Worker] = []

    def start(self, *servers: str, env: dict[str, str] | None = None) -> list[Worker]:
        """Start one worker per name ("daphne" or "uvicorn") at once; wait until each accepts connections."""
        started = []
        for server in servers:
            name = f"{server}-{next(_names)}"
            port = free_port()
            log = self.tmp / f"{name}.log"
            if server == "daphne":
                command = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "example_project.asgi:application"]
            elif server == "uvicorn":
                command = [
                    *(str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port)),
                    *("--lifespan", "off", "example_project.asgi:application"),
                ]
            else:
                raise ValueError(f"unknown server {server!r}")
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, cwd=ROOT, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
                )
            worker = Worker(name, port, process, log, self.token)
            self.workers.append(worker)
            started.append(worker)
        deadline = time.monotonic() + 30
        for worker in started:
            while True:
                assert worker.alive(), f"{worker} exited:\n{worker.log_text()}"
                assert time.monotonic() < deadline, f"{worker} did not listen within 30 s:\n{worker.log_text()}"
                try:
                    socket.create_connection(("127.0.0.1", worker.port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
        return started

    def stop(self) -> None:
        """Stop every worker: SIGTERM to all at once, then SIGKILL to any still running after 10 s."""
        for worker in self.workers:
            if worker.alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.stop()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read on the workers' database (``%s`` placeholders on both back ends)."""
        if is_postgres(self.env.get("DATABASE_URL")):
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"], connect_timeout=5) as connection:
                return connection.execute(sql, params).fetchall()
        connection = sqlite3.connect(self.env["SQLITE_PATH"], timeout=20)
        try:
            return connection.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            connection.close()


@contextlib.contextmanager
def _postgres_database(url: str, name: str) -> Iterator[str]:
    """A new, empty database on the server of ``url``; dropped (even with connections left) at the end."""
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            break
        except psycopg.errors.ObjectInUse:
            # Another CREATE DATABASE (pytest-django's, a parallel run's) is copying template1 right now.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield with_path(url, name)
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def _redis_database(url: str, number: int) -> Iterator[str]:
    """``url`` pointed at Redis database ``number``, empty at the start and at the end."""
    import redis

    dedicated = with_path(url, str(number))
    client = redis.Redis.from_url(dedicated, socket_connect_timeout=5)
    try:
        client.flushdb()
        yield dedicated
    finally:
        client.flushdb()
        client.close()


@contextlib.contextmanager
def live_site(tmp: Path, *, redis_db: int, env: dict[str, str] | None = None) -> Iterator[Site]:
    """A migrated, seeded back end for worker processes, on what this test run uses (see the module docstring)."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "SQLITE_PATH", "DJANGO_SETTINGS_MODULE")
    }
    base.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "DJANGO_DEBUG": "0",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            # The tests count streamed events one per provider chunk (tests/settings.py says the same).
            "CHATMODEL_STREAM_COALESCE_MS": "0",
            **(env or {}),
        }
    )
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    with contextlib.ExitStack() as stack:
        if is_postgres(database_url):
            name = f"chatmodel_live_{os.getpid()}_{next(_names)}"
            base["DATABASE_URL"] = stack.enter_context(_postgres_database(database_url, name))
        else:
            base["SQLITE_PATH"] = str(tmp / "db.sqlite3")
        if redis_url:
            base["REDIS_URL"] = stack.enter_context(_redis_database(redis_url, redis_db))
        setup = subprocess.run(
            [sys.executable, "-c", SETUP], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120, check=False
        )
        assert setup.returncode == 0, setup.stderr
        site = Site(base, setup.stdout.strip().splitlines()[-1], tmp)
        stack.callback(site.stop)
        yield site
