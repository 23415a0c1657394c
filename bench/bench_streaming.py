"""Item 2, streaming: time to first token and inter-token delay over the websocket vs the hand-written consumer.

    .venv/bin/python -m bench.bench_streaming
    .venv/bin/python -m bench.bench_streaming --smoke

One daphne worker of the example project (``bench.site``) on a SQLite file; the fake model in its
own process streams 30 words, one every 2 ms. Measured (A): a ``websockets`` client on a fresh
session sends ``add_messages``, waits for ``messages.added``, then sends ``run`` (``stream: true``);
time to first token (TTFT) is from sending ``run`` to the first ``run.delta``, and the inter-token
delays are the gaps between deltas. Floor (B): the same client and frames on a daphne worker of
``bench/floor.py`` (a Channels consumer calling ``litellm.acompletion(stream=True)`` and sending a
frame per delta, no database), against the same server. A and B alternate.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from bench import common
from bench.common import ItemResult, Row, Summary
from bench.site import Live, StreamedRun, add_and_run, live, open_socket
from tests.live import Worker

TARGET = 1.10
QUESTION = "Tell me about the weather in Oslo today, please."


async def _ws_run(live_site: Live, port: int, session_uuid: str) -> StreamedRun:
    async with open_socket(port, live_site.token, session_uuid) as ws:
        return await add_and_run(ws, QUESTION)


def measure(live_site: Live, worker: Worker, reps: int, warmup: int) -> ItemResult:
    """Interleave websocket runs on ``worker`` and on a worker of the floor consumer."""
    result = ItemResult("2", f"Streaming over the websocket ({live_site.label})")
    with common.fake_server(common.FAST_TOKEN_DELAY) as fake:
        sessions = live_site.seed("bench-streaming", fake.url, sessions=reps + warmup)
        floor_worker = live_site.start_floor(fake.url)
        loop = asyncio.new_event_loop()
        app_runs: list[StreamedRun] = []
        floor_runs: list[StreamedRun] = []
        pending = iter(sessions)
        try:

            def app() -> float:
                return checked(worker, next(pending), app_runs)

            def floor() -> float:
                return checked(floor_worker, str(uuid.uuid4()), floor_runs)

            def checked(on: Worker, session_uuid: str, runs: list[StreamedRun]) -> float:
                run = loop.run_until_complete(_ws_run(live_site, on.port, session_uuid))
                if run.error or "".join(run.text) != common.REPLY:
                    raise RuntimeError(f"websocket run went wrong: {run.error or 'text differs'}\n{on.log_text()}")
                runs.append(run)
                return run.ttft

            common.interleave(app, floor, reps, warmup)
        finally:
            loop.close()
            floor_worker.stop()

    app_runs, floor_runs = app_runs[warmup:], floor_runs[warmup:]
    ttft, ttft_floor = Summary.of([r.ttft for r in app_runs]), Summary.of([r.ttft for r in floor_runs])
    gaps = Summary.of([g for r in app_runs for g in r.gaps])
    gaps_floor = Summary.of([g for r in floor_runs for g in r.gaps])
    ttft_ratio = common.ratio(ttft.median, ttft_floor.median)
    result.rows = [
        Row(
            "2",
            f"time to first token, app vs hand-written consumer, {live_site.label}",
            ttft.text(),
            ttft_floor.text(),
            ttft_ratio,
            f"<= {TARGET:.2f}",
            ttft_ratio <= TARGET,
        ),
        Row(
            "2",
            "inter-token delay, app vs hand-written consumer",
            gaps.text(),
            gaps_floor.text(),
            common.ratio(gaps.median, gaps_floor.median),
        ),
        Row(
            "2",
            "inter-token delay p99, app vs hand-written consumer",
            f"{gaps.p99:.2f} ms",
            f"{gaps_floor.p99:.2f} ms",
            common.ratio(gaps.p99, gaps_floor.p99),
        ),
    ]
    added = ttft.median - ttft_floor.median
    result.notes = [
        f"{reps} streamed runs each after {warmup} unrecorded warm-up runs, each websocket run on a fresh session "
        f"(one user message); the fake model streams {common.REPLY_WORDS} words, one every "
        f"{common.FAST_TOKEN_DELAY * 1000:.0f} ms, and sends the first at once.",
        f"The app adds {added:.1f} ms to the first token at the median over the hand-written consumer (the same "
        "websocket client and frames, bench/floor.py); against a model that takes T ms to its first token, the "
        "ratio is "
        f"(T + {ttft.median:.0f}) / (T + {ttft_floor.median:.0f}), at most {TARGET:.2f} from T = "
        f"{max(0.0, added / (TARGET - 1) - ttft_floor.median):.0f} ms.",
    ]
    return result


def main() -> None:
    started = time.perf_counter()
    args = common.arguments(
        __doc__.split("\n\n")[0],
        lambda p: p.add_argument("--reps", type=int, help="measured runs of each (default 100, smoke 5)"),
        lambda p: p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite"),
    )
    reps = args.reps or (5 if args.smoke else 100)
    warmup = 2 if args.smoke else 10
    with live(args.db) as site:
        result = measure(site, site.start_worker(), reps, warmup)
    common.finish(result, started, args.json)


if __name__ == "__main__":
    main()
