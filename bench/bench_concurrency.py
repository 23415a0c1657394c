"""Item 4, concurrency: N streams at once on one worker: added p99 inter-token delay, errors, RSS per connection.

    .venv/bin/python -m bench.bench_concurrency                  # N = 100, 500, 1000 on SQLite
    .venv/bin/python -m bench.bench_concurrency --db postgres
    .venv/bin/python -m bench.bench_concurrency --smoke          # N = 10

One daphne worker of the example project (in-memory channel layer). The fake model, in its own
process, streams 30 words at a hosted model's pace (one every 30 ms). N websocket clients, from one
asyncio process, each on a session of its own, connect (16 handshakes at a time); when all have connected, each
sends ``add_messages`` and a streamed ``run`` at once and timestamps every ``run.delta``. Errors are
failed handshakes, ``run.failed`` or ``error`` events, timeouts, and runs whose deltas do not add
up to the reply. The worker's RSS (VmRSS) is sampled before the sockets connect and every 50 ms
after. The floor is the inter-token delay of bare LiteLLM streams from this process to the same
server, measured before each N and after the last; "added p99" is the sockets' p99 less the
floor's. For reference, the fake server alone is also measured at N (N raw HTTP streams, no
LiteLLM, no app), to show what the model server and this client can sustain on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

from bench import common
from bench.common import ItemResult, Row, Summary
from bench.site import Live, StreamedRun, add_and_run, litellm_stream, live, open_socket
from tests.live import Worker

LEVELS = (100, 500, 1000)
SMOKE_LEVELS = (10,)
TARGET_MS = 50.0
HANDSHAKES = 16
QUESTION = "Tell me about the weather in Oslo today, please."


async def _socket(n: int, port: int, token: str, session_uuid: str, state: dict) -> StreamedRun:
    try:
        async with state["handshakes"]:
            ws = await open_socket(port, token, session_uuid, open_timeout=120)
    except Exception as exc:
        run = StreamedRun()
        run.error = f"handshake: {type(exc).__name__}"
        _attempted(n, state)
        return run
    try:
        _attempted(n, state)
        await state["go"].wait()
        return await add_and_run(ws, QUESTION, timeout=state["timeout"])
    finally:
        await ws.close()


def _attempted(n: int, state: dict) -> None:
    state["attempted"] += 1
    if state["attempted"] == n:
        state["connected_in"] = time.perf_counter() - state["started"]
        state["go"].set()


async def _sample_rss(pid: int, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(common.rss_kib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def burst(worker: Worker, token: str, sessions: list[str], timeout: float) -> dict:
    """N sockets at once; their runs, the worker's RSS samples and CPU time, this process's CPU time."""
    n = len(sessions)
    # Connects as fast as the worker accepts them, HANDSHAKES at a time: each handshake checks the session on the
    # worker's one database thread, and daphne drops a socket not accepted within 5 s (--websocket_connect_timeout),
    # so firing all N at once would measure handshakes, not streams.
    state = {
        "attempted": 0,
        "go": asyncio.Event(),
        "handshakes": asyncio.Semaphore(HANDSHAKES),
        "timeout": timeout,
        "started": time.perf_counter(),
    }
    pid = worker.process.pid
    rss_before = common.rss_kib(pid)
    samples: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(pid, samples, stop))
    cpu_worker, cpu_self, wall = common.cpu_seconds(pid), time.process_time(), time.perf_counter()
    runs = await asyncio.gather(*(_socket(n, worker.port, token, s, state) for s in sessions))
    wall = time.perf_counter() - wall
    cpu_worker, cpu_self = common.cpu_seconds(pid) - cpu_worker, time.process_time() - cpu_self
    stop.set()
    await sampler
    return {
        "runs": runs,
        "rss_before": rss_before,
        "rss_peak": max(samples, default=rss_before),
        "cpu_worker": cpu_worker,
        "cpu_self": cpu_self,
        "wall": wall,
        "connected_in": state.get("connected_in", float("nan")),
    }


def peak_in_flight(runs: list[StreamedRun]) -> int:
    """The most streams that were between their first and last delta at the same moment."""
    edges = sorted(
        [(r.deltas[0], 1) for r in runs if r.deltas] + [(r.deltas[-1], -1) for r in runs if r.deltas],
        key=lambda e: (e[0], e[1]),
    )
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


async def _raw_stream(port: int, body: bytes) -> list[float]:
    """One streamed completion over a plain socket: the arrival time of each word chunk."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        times = []
        while line := await reader.readline():
            if line.startswith(b"data: [DONE]"):
                break
            if line.startswith(b"data: ") and b'"content": "' in line and b'"content": ""' not in line:
                times.append(time.perf_counter())
        return times
    finally:
        writer.close()


async def raw_burst(api_base: str, n: int) -> list[float]:
    """N raw streams from the fake server at once: their inter-chunk gaps (ms)."""
    port = int(api_base.rsplit(":", 1)[1].split("/", 1)[0])
    body = json.dumps(
        {"model": "fake-model", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    ).encode()
    streams = await asyncio.gather(*(_raw_stream(port, body) for _ in range(n)))
    return [(b - a) * 1000 for times in streams for a, b in zip(times, times[1:], strict=False)]


def floor_gaps(api_base: str, streams: int) -> list[float]:
    """Inter-token gaps (ms) of bare LiteLLM streams, one after another."""
    messages = [{"role": "system", "content": common.SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}]
    return [g for _ in range(streams) for g in litellm_stream(api_base, messages).gaps]


def measure(live_site: Live, levels: tuple[int, ...], timeout: float, floor_streams: int = 5) -> ItemResult:
    """Every level in turn, each on a fresh worker (so RSS and leftovers of one level do not carry over to the next);
    floors before each level and after the last."""
    result = ItemResult("4", f"Concurrency ({live_site.label})")
    label = live_site.label
    soft_limit = common.raise_open_files(4 * max(levels) + 1024)
    with common.fake_server(common.PACED_TOKEN_DELAY) as fake:
        sessions = live_site.seed(f"bench-concurrency-{os.getpid()}", fake.url, sessions=sum(levels) + 2 * len(levels))
        loop = asyncio.new_event_loop()
        try:
            common.litellm()
            floor_gaps(fake.url, 1)  # the floor's first connection
            floors: list[float] = []
            p99s: list[float] = []
            offset = 0
            for n in levels:
                worker = live_site.start_worker()
                try:
                    # Warm the worker (its LiteLLM import, its first model connection) first.
                    warm = loop.run_until_complete(burst(worker, live_site.token, sessions[offset : offset + 2], 60))
                    if any(r.error for r in warm["runs"]):
                        errors = [r.error for r in warm["runs"]]
                        raise RuntimeError(f"warm-up runs failed: {errors}\n{worker.log_text()}")
                    offset += 2
                    floors += floor_gaps(fake.url, floor_streams)
                    raw = loop.run_until_complete(raw_burst(fake.url, n))
                    cpu_fake = common.cpu_seconds(fake.pid)
                    level = sessions[offset : offset + n]
                    got = loop.run_until_complete(burst(worker, live_site.token, level, timeout))
                    got["cpu_fake"] = common.cpu_seconds(fake.pid) - cpu_fake
                    got["raw"] = raw
                    offset += n
                    p99s.append(_level_rows(result, label, n, got, target=n == max(levels)))
                finally:
                    worker.stop()
            floors += floor_gaps(fake.url, floor_streams)
        finally:
            loop.close()
    floor = Summary.of(floors)
    _apply_floor(result, floor, p99s)
    result.notes.insert(
        0,
        f"The fake model streams {common.REPLY_WORDS} words, one every {common.PACED_TOKEN_DELAY * 1000:.0f} ms. "
        f"Floor: {len(floors)} inter-token gaps of bare LiteLLM streams from the client process, "
        f"{floor.text()}. Each N on a fresh worker, warmed by two runs; clients connect {HANDSHAKES} handshakes at a "
        f"time and wait at most {timeout:.0f} s for their run. Open-files limit {soft_limit}.",
    )
    return result


def _level_rows(result: ItemResult, label: str, n: int, got: dict, target: bool) -> float:
    """The rows of one level (the added p99 is filled in once the floor is known); returns its p99 (ms)."""
    runs: list[StreamedRun] = got["runs"]
    handshakes = sum(1 for r in runs if r.error and r.error.startswith("handshake"))
    failed = sum(1 for r in runs if r.error and not r.error.startswith("handshake"))
    short = [r for r in runs if not r.error and "".join(r.text) != common.REPLY]
    errors = handshakes + failed + len(short)
    gaps = Summary.of([g for r in runs for g in r.gaps])
    ttft = Summary.of([r.ttft for r in runs if r.deltas])
    raw = Summary.of(got["raw"])
    per_connection = (got["rss_peak"] - got["rss_before"]) / n
    where = f"N={n}, {label}"
    result.rows += [
        Row("4", f"inter-token delay over the websocket, {where}", gaps.text(), "pending"),
        # The targets are the issue's, at the largest N.
        Row(
            "4",
            f"added p99 inter-token delay, {where}",
            "pending",
            "pending",
            None,
            f"< {TARGET_MS:.0f} ms" if target else "",
        ),
        Row("4", f"errors, {where}", str(errors), "", None, "0" if target else "", (errors == 0) if target else None),
        Row("4", f"worker RSS per connection, {where}", f"{per_connection:.0f} KiB"),
        Row("4", f"for reference: the fake model alone at N={n} (raw HTTP, no LiteLLM, no app)", raw.text()),
    ]
    missing = sum(common.REPLY_WORDS - len(r.deltas) for r in short)
    result.notes.append(
        f"{where}: {handshakes} failed handshakes, {failed} runs failed or timed out"
        + (f" ({', '.join(sorted({r.error for r in runs if r.error}))})" if handshakes + failed else "")
        + f", {len(short)} finished with deltas missing ({missing} in all); time to first token {ttft.text()}; at "
        f"most {peak_in_flight(runs)} streams in flight at once; all connected in {got['connected_in']:.1f} s, "
        f"the burst took {got['wall']:.1f} s. Worker RSS "
        f"{got['rss_before'] / 1024:.0f} MiB before, {got['rss_peak'] / 1024:.0f} MiB at peak. CPU seconds in the "
        f"burst: worker {got['cpu_worker']:.1f}, fake model {got['cpu_fake']:.1f}, client {got['cpu_self']:.1f}."
    )
    return gaps.p99


def _apply_floor(result: ItemResult, floor: Summary, p99s: list[float]) -> None:
    added_rows = [r for r in result.rows if r.figure.startswith("added p99")]
    for row, p99 in zip(added_rows, p99s, strict=True):
        added = p99 - floor.p99
        row.measured = f"{added:.2f} ms (p99 {p99:.2f} ms)"
        row.floor = f"p99 {floor.p99:.2f} ms"
        row.met = (added < TARGET_MS) if row.target else None
    for row in result.rows:
        if row.floor == "pending":
            row.floor = floor.text()


def main() -> None:
    started = time.perf_counter()
    args = common.arguments(
        __doc__.split("\n\n")[0],
        lambda p: p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite"),
        lambda p: p.add_argument("--levels", help="comma-separated N (default 100,500,1000; smoke 10)"),
    )
    levels = tuple(int(n) for n in args.levels.split(",")) if args.levels else SMOKE_LEVELS if args.smoke else LEVELS
    common.raise_open_files(4 * max(levels) + 1024)
    with live(args.db) as site:
        result = measure(site, levels, timeout=30 if args.smoke else 300, floor_streams=1 if args.smoke else 5)
    common.finish(result, started, args.json)


if __name__ == "__main__":
    main()
