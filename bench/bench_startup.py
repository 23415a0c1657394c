"""Item 5, start-up: ``django.setup()`` with and without the app; worker start to the first streamed token.

    .venv/bin/python -m bench.bench_startup
    .venv/bin/python -m bench.bench_startup --smoke

``django.setup()`` is timed in fresh processes (``import django`` included), with the example
project's settings and with the same settings less ``chatmodel_app`` (``bench.settings_without_app``),
alternately; each process also says whether LiteLLM got imported. Then daphne workers of the example
project are started cold, one at a time: the first is asked for a streamed run over the websocket as
soon as its port opens, the next one only 10 s after it was started. The example's ``asgi.py`` starts
importing LiteLLM on a background thread when the worker starts; comparing the two first tokens shows
whether a first request still pays for that import. The floor of both is the time to first token of
a second run on an already-warm worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from bench.common import ItemResult, Row, Summary
from bench.site import Live, StreamedRun, add_and_run, live, open_socket

QUESTION = "Tell me about the weather in Oslo today, please."
SETUP_CODE = """
import json, sys, time
started = time.perf_counter()
import django
django.setup()
elapsed = time.perf_counter() - started
print(json.dumps({"ms": elapsed * 1000, "litellm": "litellm" in sys.modules}))
"""


def setup_time(settings_module: str, tmp: Path) -> tuple[float, bool]:
    """``django.setup()`` in a fresh process: (milliseconds, whether litellm was imported)."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DJANGO_DEBUG": "0",
        "SQLITE_PATH": str(tmp / "setup.sqlite3"),
        "PYTHONPATH": str(common.ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", SETUP_CODE], cwd=common.ROOT, env=env, capture_output=True, text=True, check=True
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return data["ms"], data["litellm"]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, deadline: float) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not listen in time:\n{log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.005)


async def _run(port: int, token: str, session_uuid: str) -> StreamedRun:
    opened = time.perf_counter()
    async with open_socket(port, token, session_uuid, open_timeout=60) as ws:
        run = await add_and_run(ws, QUESTION, timeout=120)
    run.opened_at = opened
    return run


def cold_start(live_site: Live, sessions: list[str], wait: float | None) -> dict[str, float]:
    """Start a worker; when its port opens (or ``wait`` s after the start) open a socket on it, add a message
    and ask for a streamed run; then do the same again on the warm worker."""
    started = time.perf_counter()
    process, port, log = live_site.popen_worker()
    try:
        _wait_for_port(port, process, log, time.monotonic() + 60)
        listening = time.perf_counter() - started
        if wait is not None:
            time.sleep(max(0.0, started + wait - time.perf_counter()))
        loop = asyncio.new_event_loop()
        try:
            first = loop.run_until_complete(_run(port, live_site.token, sessions[0]))
            warm = loop.run_until_complete(_run(port, live_site.token, sessions[1]))
        finally:
            loop.close()
        for run in (first, warm):
            if run.error or "".join(run.text) != common.REPLY:
                raise RuntimeError(f"a run failed: {run.error or 'wrong text'}\n{log.read_text(errors='replace')}")
        return {
            "listening": listening * 1000,
            "since_start": (first.deltas[0] - started) * 1000,
            # Open the socket, add the message, run, first token: what the first user waits for.
            "request": (first.deltas[0] - first.opened_at) * 1000,
            "warm_request": (warm.deltas[0] - warm.opened_at) * 1000,
            "ttft": first.ttft,
            "warm_ttft": warm.ttft,
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def measure(live_site: Live, setup_reps: int, start_reps: int, late_after: float | None) -> ItemResult:
    """Both halves of the item on ``live_site`` (no worker started ``late_after`` s before its request when None)."""
    result = ItemResult("5", "Start-up")
    with tempfile.TemporaryDirectory(prefix="chatmodel-bench-setup-") as tmp:
        litellm_seen = []

        def with_app() -> float:
            ms, imported = setup_time("example_project.settings", Path(tmp))
            litellm_seen.append(imported)
            return ms

        def without_app() -> float:
            return setup_time("bench.settings_without_app", Path(tmp))[0]

        a, b = common.interleave(with_app, without_app, setup_reps, 1 if setup_reps > 2 else 0)
    setup, setup_floor = Summary.of(a), Summary.of(b)

    with common.fake_server(common.FAST_TOKEN_DELAY) as fake:
        sessions = live_site.seed("bench-startup", fake.url, sessions=4 * start_reps)
        now, late = [], []
        for i in range(start_reps):
            now.append(cold_start(live_site, sessions[4 * i : 4 * i + 2], None))
            if late_after is not None:
                late.append(cold_start(live_site, sessions[4 * i + 2 : 4 * i + 4], late_after))

    def pick(runs: list[dict[str, float]], key: str) -> Summary:
        return Summary.of([r[key] for r in runs])

    warm = pick(now + late, "warm_request")
    first_now = pick(now, "request")
    result.rows = [
        Row(
            "5",
            "django.setup() of the example project, with the app vs without",
            setup.text(),
            setup_floor.text(),
            common.ratio(setup.median, setup_floor.median),
        ),
        Row("5", "LiteLLM imported by django.setup()", "yes" if any(litellm_seen) else "no"),
        Row("5", "worker start to port open", pick(now + late, "listening").text()),
        Row("5", "worker start to first token, asked when the port opens", pick(now, "since_start").text()),
        Row(
            "5",
            "first request (socket, add_messages, run) to first token, sent when the port opens, vs a warm worker",
            first_now.text(),
            warm.text(),
            common.ratio(first_now.median, warm.median),
        ),
    ]
    if late:
        first_late = pick(late, "request")
        result.rows.append(
            Row(
                "5",
                f"first request to first token, sent {late_after:g} s after start, vs a warm worker",
                first_late.text(),
                warm.text(),
                common.ratio(first_late.median, warm.median),
            )
        )
        paid = first_now.median - first_late.median
        verdict = (
            f"a request sent as soon as the port opens pays about {paid:.0f} ms of start-up work (LiteLLM's import, "
            f"which asgi.py's preload thread is still doing), while one sent {late_after:g} s after the start pays "
            f"{first_late.median - warm.median:.0f} ms more than on a warm worker"
            if paid > max(100.0, warm.median)
            else "the start-up work (LiteLLM's import) is done before the first request: it does not pay for it"
        )
    else:
        result.rows.append(Row("5", "first request to first token, sent well after start", "not measured (smoke)"))
        verdict = "the late request was not measured"
    result.notes = [
        f"django.setup(): {setup_reps} fresh processes with the app and as many without, alternately. Worker starts: "
        f"{start_reps} cold workers asked at once"
        + (f" and {start_reps} asked {late_after:g} s after their start" if late else "")
        + f"; the fake model streams {common.REPLY_WORDS} words every {common.FAST_TOKEN_DELAY * 1000:.0f} ms. "
        "The floor of a first request is the same request (a new socket, add_messages, a streamed run) made next on "
        "the same, now warm, worker.",
        f"{verdict[0].upper()}{verdict[1:]}. Time to first token (from sending run) of the first run: "
        f"{pick(now, 'ttft').text()} when asked at once; on a warm worker {pick(now + late, 'warm_ttft').text()}.",
    ]
    return result


def main() -> None:
    started = time.perf_counter()
    args = common.arguments(__doc__.split("\n\n")[0])
    with live("sqlite") as site:
        result = measure(
            site,
            setup_reps=1 if args.smoke else 20,
            start_reps=1 if args.smoke else 3,
            late_after=None if args.smoke else 10.0,
        )
    common.finish(result, started, args.json)


if __name__ == "__main__":
    main()
