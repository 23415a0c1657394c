"""A live site for the benchmarks that talk to real daphne workers (items 2, 4, 5 and 6).

Built on ``tests.live`` (the test suite's worker helper): a migrated back end of its own (a SQLite
file, or a new PostgreSQL database dropped at the end), user "alice" with a DRF token, and daphne
workers of the example project started on free loopback ports. The workers run ``bench.settings``
(the example project's settings plus the REST baseline's URL) with the in-memory channel layer, and
get the fake provider key in their environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import common
from tests.live import Site, Worker, live_site

_BACKEND_VARS = ("DATABASE_URL", "REDIS_URL", "SQLITE_PATH", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG")


class Live:
    """A site (database, token) on which benchmarks seed chat models and start workers."""

    def __init__(self, site: Site, db: str) -> None:
        self.site = site
        self.db = db
        self.token = site.token
        self._ready = False

    @property
    def label(self) -> str:
        return {"sqlite": "SQLite", "postgres": "PostgreSQL"}[self.db]

    def seed(self, name: str, api_base: str, sessions: int = 0) -> list[str]:
        """A chat model ``name`` on the fake server at ``api_base`` and ``sessions`` new sessions of alice's."""
        self._django()
        from django.contrib.auth import get_user_model

        from chatmodel_app.models import ChatModel, Session, Version

        chat_model = ChatModel.objects.filter(name=name).first() or common.chat_model_create(name, api_base)
        version = Version.objects.get(chat_model=chat_model, is_published=True)
        user = get_user_model().objects.get(username="alice")
        rows = [Session(chat_model=chat_model, version=version, user=user) for _ in range(sessions)]
        Session.objects.bulk_create(rows, batch_size=500)
        return [str(s.uuid) for s in rows]

    def _django(self) -> None:
        """Set Django up in this process on the site's database (once: one live site per process)."""
        if self._ready:
            return
        import django
        from django.conf import settings

        if settings.configured:
            raise RuntimeError("Django is already set up in this process: use one live site per process")
        for key in ("DJANGO_SETTINGS_MODULE", "SQLITE_PATH", "DATABASE_URL", "DJANGO_DEBUG"):
            if key in self.site.env:
                os.environ[key] = self.site.env[key]
        django.setup()
        from django.core.management import call_command

        # The baseline table of item 6 (bench ships no migrations).
        call_command("migrate", run_syncdb=True, verbosity=0)
        self._ready = True

    def start_worker(self, env: dict[str, str] | None = None) -> Worker:
        """One daphne worker, listening, and done with its start-up work (the LiteLLM preload of asgi.py)."""
        (worker,) = self.site.start("daphne", env=env)
        common.wait_idle(worker.process.pid)
        return worker

    def start_floor(self, api_base: str) -> Worker:
        """A daphne worker serving the floor consumer (``bench/floor.py``) against the model at ``api_base``,
        listening and done importing LiteLLM."""
        from tests.live import BIN, free_port

        port = free_port()
        log = self.site.tmp / f"daphne-floor-{port}.log"
        env = {k: v for k, v in self.site.env.items() if k != "DJANGO_SETTINGS_MODULE"}
        env["BENCH_FLOOR_API_BASE"] = api_base
        command = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "bench.floor:application"]
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=common.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        worker = Worker(f"floor-{port}", port, process, log, self.token)
        self.site.workers.append(worker)  # stopped with the site, whatever happens
        deadline = time.monotonic() + 120  # importing LiteLLM takes a minute on a busy machine
        while True:
            if not worker.alive() or time.monotonic() > deadline:
                worker.stop()
                raise RuntimeError(f"the floor worker did not listen within 120 s:\n{worker.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        common.wait_idle(process.pid)
        return worker

    def popen_worker(self) -> tuple[subprocess.Popen, int, Path]:
        """Start a daphne worker without waiting for it (item 5 times its start); returns (process, port, log)."""
        from tests.live import BIN, free_port

        port = free_port()
        log = self.site.tmp / f"daphne-cold-{port}.log"
        command = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "example_project.asgi:application"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=common.ROOT, env=self.site.env, stdout=out, stderr=subprocess.STDOUT
            )
        return process, port, log


@contextlib.contextmanager
def live(db: str = "sqlite") -> Iterator[Live]:
    """A live site on SQLite or on a new PostgreSQL database; every worker is stopped at the end."""
    common.raise_open_files()
    saved = {key: os.environ.get(key) for key in _BACKEND_VARS}
    try:
        for key in _BACKEND_VARS:
            os.environ.pop(key, None)
        if db == "postgres":
            os.environ["DATABASE_URL"] = common.postgres_server_url()
        # The app's own default delta coalescing (the test workers turn it off; an empty value means the default).
        env = {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "OPENAI_API_KEY": common.FAKE_KEY,
            "CHATMODEL_STREAM_COALESCE_MS": os.environ.get("CHATMODEL_STREAM_COALESCE_MS", ""),
        }
        with (
            tempfile.TemporaryDirectory(prefix="chatmodel-bench-live-") as tmp,
            live_site(Path(tmp), redis_db=0, env=env) as site,
        ):
            here = Live(site, db)
            try:
                yield here
            finally:
                if here._ready:
                    from django.db import connections

                    connections.close_all()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- the websocket client -------------------------------------------------------------------------


def open_socket(worker_port: int, token: str, session_uuid: str, open_timeout: float = 30) -> Any:
    """A websocket on the session, as a non-browser client: token header, Origin, no keepalive pings."""
    http = f"http://127.0.0.1:{worker_port}"
    return connect(
        f"ws://127.0.0.1:{worker_port}/ws/chatmodel/sessions/{session_uuid}/",
        additional_headers={"Authorization": f"Token {token}"},
        origin=http,
        open_timeout=open_timeout,
        ping_interval=None,  # browsers send no pings; a busy client must not fail its own keepalive
        close_timeout=5,
        max_size=None,
    )


class StreamedRun:
    """What a client saw of one streamed run: when it asked, when each delta arrived, how it ended."""

    def __init__(self) -> None:
        self.opened_at = 0.0
        self.sent_at = 0.0
        self.deltas: list[float] = []
        self.text: list[str] = []
        self.ended: str | None = None
        self.error: str | None = None

    @property
    def ttft(self) -> float:
        return (self.deltas[0] - self.sent_at) * 1000 if self.deltas else float("nan")

    @property
    def gaps(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.deltas, self.deltas[1:], strict=False)]


async def add_and_run(ws: ClientConnection, content: str, timeout: float = 60.0) -> StreamedRun:
    """Send add_messages, wait for messages.added, send a streamed run; timestamp every run.delta until it ends."""
    run = StreamedRun()
    clock = time.perf_counter
    try:
        async with asyncio.timeout(timeout):
            await ws.send(json.dumps({"type": "add_messages", "messages": [{"role": "user", "content": content}]}))
            while True:
                event = json.loads(await ws.recv())
                if event["type"] == "messages.added":
                    break
                if event["type"] == "error":
                    run.error = f"add_messages: {event.get('code')}"
                    return run
            run.sent_at = clock()
            await ws.send(json.dumps({"type": "run", "stream": True}))
            while True:
                event = json.loads(await ws.recv())
                kind = event["type"]
                if kind == "run.delta":
                    run.deltas.append(clock())
                    run.text.append(event["delta"])
                elif kind in ("run.completed", "run.failed"):
                    run.ended = kind
                    if kind == "run.failed":
                        run.error = f"run.failed: {event.get('error')}"
                    return run
                elif kind == "error":
                    run.error = f"error: {event.get('code')}"
                    return run
    except TimeoutError:
        run.error = "timeout"
    except Exception as exc:  # a dropped socket, a refused handshake
        run.error = type(exc).__name__
    return run
