"""Item 6, REST: add_messages requests per second vs a plain DRF create view on the same database.

    .venv/bin/python -m bench.bench_rest
    .venv/bin/python -m bench.bench_rest --db postgres --levels 10,50,100
    .venv/bin/python -m bench.bench_rest --smoke

One daphne worker runs ``bench.settings``: the example project plus ``bench/urls.py``'s baseline,
a DRF ``CreateAPIView`` that stores one message row (``bench.models.BaselineMessage``) on the
user's own session. K clients, each on a session of its own, with kept-alive HTTP/1.1 connections
(a minimal client, so the client costs as little as it can), send as many requests as they can for
a fixed time: ``POST /api/sessions/<uuid>/messages/`` with one user message (measured), or
``POST /bench/sessions/<uuid>/messages/`` with the same fields (floor), in alternating rounds.
Every response must be 201. The ratio is measured / floor of requests per second: below 1, the
app serves fewer.
"""

from __future__ import annotations

import asyncio
import collections
import json
import statistics
import time

from bench import common
from bench.common import ItemResult, Row, Summary
from bench.site import Live, live
from tests.live import Worker

LEVELS = (1, 10, 50, 100)
SMOKE_LEVELS = (2,)
CONTENT = "Tell me about the weather in Oslo today, please."


class Client:
    """One kept-alive HTTP/1.1 connection that POSTs JSON and reads the response by its Content-Length."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {self.token}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, close = None, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding":
                raise RuntimeError("chunked responses are not expected here")
        await self.reader.readexactly(length or 0)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def load(worker: Worker, token: str, paths: list[str], body: bytes, seconds: float) -> dict:
    """One client per path, as many requests as they manage in ``seconds``: counts and latencies."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    errors: list[int | str] = []

    async def one(path: str) -> int:
        client = Client(worker.port, token)
        done = 0
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    status = await client.post(path, body)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    # A dropped connection is a failed request too; the next one reconnects.
                    status = type(exc).__name__
                    await client.close()
                latencies.append((time.perf_counter() - started) * 1000)
                if status != 201:
                    errors.append(status)
                done += 1
        finally:
            await client.close()
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(p) for p in paths))
    elapsed = time.perf_counter() - started
    return {"rps": sum(counts) / elapsed, "latencies": latencies, "errors": errors}


def measure(live_site: Live, worker: Worker, levels: tuple[int, ...], rounds: int, seconds: float) -> ItemResult:
    """Alternate rounds of the app's add_messages and the baseline at each level K."""
    result = ItemResult("6", f"REST add_messages ({live_site.label})")
    sessions = live_site.seed("bench-rest", "http://127.0.0.1:9/v1", sessions=max(levels))
    app_body = json.dumps({"messages": [{"role": "user", "content": CONTENT}]}).encode()
    base_body = json.dumps({"role": "user", "content": CONTENT}).encode()
    loop = asyncio.new_event_loop()
    try:
        for k in levels:
            app_paths = [f"/api/sessions/{s}/messages/" for s in sessions[:k]]
            base_paths = [f"/bench/sessions/{s}/messages/" for s in sessions[:k]]
            # Warm both views (imports, connections, caches) before measuring.
            for paths, body in ((app_paths, app_body), (base_paths, base_body)):
                warm = loop.run_until_complete(load(worker, live_site.token, paths, body, min(seconds, 1.0)))
                if warm["errors"]:
                    statuses = ", ".join(str(e) for e in sorted(set(warm["errors"]), key=str))
                    result.notes.append(f"K={k}: the warm-up got {len(warm['errors'])} responses not 201 ({statuses}).")
            app_rounds, base_rounds = [], []
            for r in range(rounds):
                order = [("app", app_paths, app_body), ("base", base_paths, base_body)]
                for name, paths, body in order if r % 2 == 0 else reversed(order):
                    got = loop.run_until_complete(load(worker, live_site.token, paths, body, seconds))
                    (app_rounds if name == "app" else base_rounds).append(got)
            app_rps = statistics.median(g["rps"] for g in app_rounds)
            base_rps = statistics.median(g["rps"] for g in base_rounds)
            app_lat = Summary.of([x for g in app_rounds for x in g["latencies"]])
            base_lat = Summary.of([x for g in base_rounds for x in g["latencies"]])
            app_errors = collections.Counter(e for g in app_rounds for e in g["errors"])
            base_errors = collections.Counter(e for g in base_rounds for e in g["errors"])
            result.rows += [
                Row(
                    "6",
                    f"add_messages requests/s vs plain DRF CreateAPIView, K={k}, {live_site.label}",
                    f"{app_rps:.0f} req/s",
                    f"{base_rps:.0f} req/s",
                    common.ratio(app_rps, base_rps),
                ),
                Row(
                    "6",
                    f"request latency, K={k}, {live_site.label}",
                    app_lat.text(),
                    base_lat.text(),
                    common.ratio(app_lat.median, base_lat.median),
                ),
            ]
            app_failed, base_failed = sum(app_errors.values()), sum(base_errors.values())
            result.rows.append(
                Row(
                    "6",
                    f"responses other than 201, K={k}, {live_site.label}",
                    str(app_failed),
                    str(base_failed),
                    None,
                    "0",
                    not app_failed,
                )
            )
            for name, errors in (("add_messages", app_errors), ("the baseline", base_errors)):
                if errors:
                    statuses = ", ".join(f"{n} x {code}" for code, n in sorted(errors.items(), key=str))
                    result.notes.append(f"K={k}: {sum(errors.values())} responses of {name} were not 201: {statuses}.")
    finally:
        loop.close()
    result.notes.insert(
        0,
        f"{rounds} rounds of {seconds:g} s per view and K, alternating; requests/s is the median round's. One user "
        "message per request; each client on its own session, over one kept-alive connection. Under ASGI, Django runs "
        "each request's view on a thread of its own, so with K > 1 the requests' transactions meet in the database "
        "(on SQLite, one writer at a time).",
    )
    return result


def main() -> None:
    started = time.perf_counter()
    args = common.arguments(
        __doc__.split("\n\n")[0],
        lambda p: p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite"),
        lambda p: p.add_argument("--levels", help="comma-separated K (default 1,10,50,100; smoke 2)"),
    )
    levels = tuple(int(k) for k in args.levels.split(",")) if args.levels else SMOKE_LEVELS if args.smoke else LEVELS
    with live(args.db) as site:
        worker = site.start_worker()
        result = measure(
            site,
            worker,
            levels,
            rounds=2 if args.smoke else 6,
            seconds=0.5 if args.smoke else 3.0,
        )
    common.finish(result, started, args.json)


if __name__ == "__main__":
    main()
