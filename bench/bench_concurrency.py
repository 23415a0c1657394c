"""Item 4, burst: N streamed runs start at once on one worker, the app against the hand-written consumer.

    .venv/bin/python -m bench.bench_concurrency                        # N = 100, 250, 500, 1000 on SQLite
    .venv/bin/python -m bench.bench_concurrency --db postgres
    .venv/bin/python -m bench.bench_concurrency --levels 100 --profile # py-spy on both workers (docs/bench.md)
    .venv/bin/python -m bench.bench_concurrency --smoke                # N = 5

The fake model, in its own process, streams 30 words at a hosted model's pace (one every 30 ms,
about 33 tokens/s). At each N, two daphne workers are measured in turn (which goes first
alternates with N), each fresh and warmed by two runs: the app's (the example project) and the
floor's (``bench/floor.py``: a Channels consumer calling ``litellm.acompletion(stream=True)`` and
sending each delta as a frame, no database). N websocket clients, from one asyncio process, each
on a session of its own, connect (16 handshakes at a time); when all have connected, each sends
``add_messages`` and a streamed ``run`` at once and timestamps every ``run.delta``. Reported per
N: time to first token (from sending ``run``) and inter-token delay (the gap between ``run.delta``
frames: where deltas are coalesced, a frame carries several tokens), p50 / p99; errors (failed
handshakes, ``run.failed`` or ``error`` events, timeouts, runs whose deltas do not add up to the
reply); the worker's CPU seconds over the burst (utime + stime of /proc/<pid>/stat, from the first
handshake to the last run's end), and that per delivered token (a word of the reply received) and
per run, which stay steady on a noisy machine where wall-clock figures do not. The ratios are the
app's / the floor's of the same run. ``--profile`` runs py-spy on both workers during each burst
and prints where their CPU went, per run and per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from pathlib import Path

from bench import common, pyspy
from bench.common import ItemResult, Row, percentile
from bench.site import Live, StreamedRun, add_and_run, live, open_socket
from tests.live import Worker

LEVELS = (100, 250, 500, 1000)
SMOKE_LEVELS = (5,)
HANDSHAKES = 16
QUESTION = "Tell me about the weather in Oslo today, please."
# The targets: CPU per delivered token at most a quarter of the floor's; at N = 100 a first token within
# 500 ms and inter-token gaps within 80 ms at p99; no errors at N = 100, 500 and 1000.
CPU_RATIO_TARGET = 0.25
TTFT_P99_TARGET_MS = 500.0
GAP_P99_TARGET_MS = 80.0
NO_ERRORS_AT = (100, 500, 1000)
PROFILES = common.OUT / "profiles"


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


def _p50_p99(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{percentile(values, 0.5):.0f} / {percentile(values, 0.99):.0f} ms"


def _side(got: dict, n: int) -> dict:
    """One worker's figures at N."""
    runs: list[StreamedRun] = got["runs"]
    handshakes = sum(1 for r in runs if r.error and r.error.startswith("handshake"))
    failed = sum(1 for r in runs if r.error and not r.error.startswith("handshake"))
    short = [r for r in runs if not r.error and "".join(r.text) != common.REPLY]
    # The fake model sends a word per chunk; the app may coalesce several into one frame, so count words, not frames.
    tokens = sum(len("".join(r.text).split()) for r in runs)
    return {
        **got,
        "ttft": [r.ttft for r in runs if r.deltas],
        "gaps": [g for r in runs for g in r.gaps],
        "errors": handshakes + failed + len(short),
        "handshakes": handshakes,
        "failed": failed,
        "short": len(short),
        "kinds": sorted({r.error for r in runs if r.error}),
        "tokens": tokens,
        "cpu_token_ms": got["cpu_worker"] / tokens * 1000 if tokens else float("nan"),
        "cpu_run_ms": got["cpu_worker"] / n * 1000,
        "rss_per_connection": (got["rss_peak"] - got["rss_before"]) / n,
    }


def _rows(result: ItemResult, label: str, n: int, app: dict, floor: dict) -> None:
    where = f"N={n}, {label}"
    first = n == 100  # the delay targets are for a burst of 100

    def p99(side: dict, key: str) -> float:
        return percentile(side[key], 0.99) if side[key] else float("nan")

    cpu_ratio = common.ratio(app["cpu_token_ms"], floor["cpu_token_ms"])
    result.rows += [
        Row(
            "4",
            f"time to first token p50 / p99, {where}",
            _p50_p99(app["ttft"]),
            _p50_p99(floor["ttft"]),
            common.ratio(p99(app, "ttft"), p99(floor, "ttft")),
            f"p99 <= {TTFT_P99_TARGET_MS:.0f} ms" if first else "",
            (p99(app, "ttft") <= TTFT_P99_TARGET_MS) if first else None,
        ),
        Row(
            "4",
            f"inter-token delay p50 / p99, {where}",
            _p50_p99(app["gaps"]),
            _p50_p99(floor["gaps"]),
            common.ratio(p99(app, "gaps"), p99(floor, "gaps")),
            f"p99 <= {GAP_P99_TARGET_MS:.0f} ms" if first else "",
            (p99(app, "gaps") <= GAP_P99_TARGET_MS) if first else None,
        ),
        Row(
            "4",
            f"errors, {where}",
            str(app["errors"]),
            str(floor["errors"]),
            None,
            "0" if n in NO_ERRORS_AT else "",
            (app["errors"] == 0) if n in NO_ERRORS_AT else None,
        ),
        Row(
            "4",
            f"worker CPU seconds in the burst, {where}",
            f"{app['cpu_worker']:.2f} s",
            f"{floor['cpu_worker']:.2f} s",
        ),
        Row(
            "4",
            f"worker CPU per delivered token, {where}",
            f"{app['cpu_token_ms']:.2f} ms",
            f"{floor['cpu_token_ms']:.2f} ms",
            cpu_ratio,
            f"<= {CPU_RATIO_TARGET:.2f}",
            cpu_ratio <= CPU_RATIO_TARGET if cpu_ratio == cpu_ratio else None,
        ),
        Row(
            "4",
            f"worker CPU per run, {where}",
            f"{app['cpu_run_ms']:.1f} ms",
            f"{floor['cpu_run_ms']:.1f} ms",
            common.ratio(app["cpu_run_ms"], floor["cpu_run_ms"]),
        ),
        Row(
            "4",
            f"worker RSS per connection, {where}",
            f"{app['rss_per_connection']:.0f} KiB",
            f"{floor['rss_per_connection']:.0f} KiB",
        ),
    ]
    for name, side in (("app", app), ("floor", floor)):
        result.notes.append(
            f"{where}, {name}: {side['handshakes']} failed handshakes, {side['failed']} runs failed or timed out"
            + (f" ({', '.join(side['kinds'])})" if side["kinds"] else "")
            + f", {side['short']} finished with deltas missing; {side['tokens']} tokens delivered; at most "
            f"{peak_in_flight(side['runs'])} streams in flight at once; all connected in {side['connected_in']:.1f} s, "
            f"the burst took {side['wall']:.1f} s. Worker RSS {side['rss_before'] / 1024:.0f} MiB before, "
            f"{side['rss_peak'] / 1024:.0f} MiB at peak. CPU seconds in the burst: worker {side['cpu_worker']:.2f}, "
            f"fake model {side['cpu_fake']:.2f}, client {side['cpu_self']:.2f}."
        )


def _measure_side(
    loop: asyncio.AbstractEventLoop,
    worker: Worker,
    token: str,
    sessions: list[str],
    fake: common.Fake,
    timeout: float,
    profile: Path | None,
) -> dict:
    """Warm the worker with two runs, then burst len(sessions) - 2 runs on it (under py-spy when ``profile``)."""
    warm = loop.run_until_complete(burst(worker, token, sessions[:2], 60))
    if any(r.error for r in warm["runs"]):
        raise RuntimeError(f"warm-up runs failed: {[r.error for r in warm['runs']]}\n{worker.log_text()[-5000:]}")
    cpu_fake = common.cpu_seconds(fake.pid)
    with pyspy.record(worker.process.pid, profile) if profile else contextlib.nullcontext():
        got = loop.run_until_complete(burst(worker, token, sessions[2:], timeout))
    got["cpu_fake"] = common.cpu_seconds(fake.pid) - cpu_fake
    return _side(got, len(sessions) - 2)


def _print_profile(result: ItemResult, path: Path, side: dict, title: str, n: int) -> None:
    print(f"\n--- py-spy profile of {title} ({path}) ---")
    print(pyspy.breakdown(path, side["cpu_worker"], n, side["tokens"]), flush=True)
    where = path.relative_to(common.ROOT)
    result.notes.append(
        f"py-spy profile of {title} in {where}; `.venv/bin/python -m bench.pyspy {where} --cpu "
        f"{side['cpu_worker']:.2f} --runs {n} --tokens {side['tokens']}` prints its breakdown."
    )


def measure(live_site: Live, levels: tuple[int, ...], timeout: float, profile: bool = False) -> ItemResult:
    """Every level in turn: the app's worker and the floor's, each fresh, in alternating order."""
    result = ItemResult("4", f"Burst ({live_site.label})")
    label = live_site.label
    soft_limit = common.raise_open_files(4 * max(levels) + 1024)
    with common.fake_server(common.PACED_TOKEN_DELAY) as fake:
        sessions = live_site.seed(f"bench-burst-{os.getpid()}", fake.url, sessions=sum(levels) + 2 * len(levels))
        loop = asyncio.new_event_loop()
        offset = 0
        try:
            for i, n in enumerate(levels):
                raw = loop.run_until_complete(raw_burst(fake.url, n))
                got = {}
                for side in ("floor", "app") if i % 2 == 0 else ("app", "floor"):
                    if side == "app":
                        worker, level = live_site.start_worker(), sessions[offset : offset + n + 2]
                        offset += n + 2
                    else:
                        worker, level = live_site.start_floor(fake.url), [str(uuid.uuid4()) for _ in range(n + 2)]
                    path = PROFILES / f"{side}-{live_site.db}-{n}.txt" if profile else None
                    try:
                        got[side] = _measure_side(loop, worker, live_site.token, level, fake, timeout, path)
                    finally:
                        worker.stop()
                    if path:
                        _print_profile(result, path, got[side], f"the {side}'s worker, {n} runs, {label}", n)
                _rows(result, label, n, got["app"], got["floor"])
                result.notes.append(f"N={n}: the fake model alone (N raw HTTP streams): inter-chunk {_p50_p99(raw)}.")
        finally:
            loop.close()
    result.notes.insert(
        0,
        f"The fake model streams {common.REPLY_WORDS} words, one every {common.PACED_TOKEN_DELAY * 1000:.0f} ms. "
        "Floor: the hand-written Channels consumer of bench/floor.py (litellm.acompletion(stream=True), a frame per "
        f"delta, no database) on a daphne worker of its own, measured in the same run. Each N on fresh workers, "
        f"warmed by two runs; clients connect {HANDSHAKES} handshakes at a time and wait at most {timeout:.0f} s for "
        f"their run. Ratios are the app's / the floor's (of p99 for the delays). Open-files limit {soft_limit}.",
    )
    return result


def main() -> None:
    started = time.perf_counter()
    args = common.arguments(
        __doc__.split("\n\n")[0],
        lambda p: p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite"),
        lambda p: p.add_argument("--levels", help="comma-separated N (default 100,250,500,1000; smoke 5)"),
    )
    levels = tuple(int(n) for n in args.levels.split(",")) if args.levels else SMOKE_LEVELS if args.smoke else LEVELS
    common.raise_open_files(4 * max(levels) + 1024)
    with live(args.db) as site:
        result = measure(site, levels, timeout=30 if args.smoke else 300, profile=args.profile)
    common.finish(result, started, args.json)


if __name__ == "__main__":
    main()
