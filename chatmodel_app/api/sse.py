"""Server-Sent Events for streamed runs, with the run's life kept apart from the HTTP connection.

``services.run_stream`` treats a closed generator as a cancel, so the response must not drive it:
a ``RunPump`` runs it to the end on its own thread and keeps the SSE frames it produced; the
response only reads them, with a sync iterator under WSGI and an async one under ASGI (Django
buffers a whole iterator of the other kind). When the client goes away the reader stops and
the run still finishes and is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from django.db import connections
from django.http import StreamingHttpResponse

from .. import events
from ..types import LLMResponse, LLMStreamResponse

logger = logging.getLogger("chatmodel_app")

CONTENT_TYPE = "text/event-stream"
TERMINAL_EVENTS = frozenset({events.RUN_COMPLETED, events.RUN_FAILED})
_KEEPALIVE = b": keepalive\n\n"

# Pumps whose run has not ended, so tests and shutdown code can wait for them.
_running: set[RunPump] = set()
_running_lock = threading.Lock()


def frame(event: dict[str, Any], response: LLMResponse | None = None) -> bytes:
    """One SSE frame: ``id: <run_id>:<seq>``, ``event: <type>``, ``data: <event JSON>``.

    The terminal event (run.completed / run.failed) also carries ``response``: the final
    chunk's fields, so an HTTP client can build the same final ``LLMStreamResponse`` as Python.
    """
    data = dict(event)
    if response is not None and event.get("type") in TERMINAL_EVENTS:
        data["response"] = response.to_dict()
    body = json.dumps(data, ensure_ascii=False, default=str)
    return f"id: {event.get('run_id') or ''}:{event.get('seq', 0)}\nevent: {event['type']}\ndata: {body}\n\n".encode()


class RunPump:
    """Runs a streamed run to its end on a thread of its own, keeping the frames for a reader."""

    def __init__(
        self, chunks: Callable[[], Iterator[LLMStreamResponse]], *, render: Callable[..., bytes] | None = None
    ) -> None:
        self._chunks = chunks
        # How an event becomes bytes: ``frame`` (this API's SSE), or another protocol's (``chatmodel_app.ai_sdk``).
        self._render = render or frame
        self._frames: list[bytes] = []
        self._ended = False
        self._cond = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._first: LLMStreamResponse | None = None
        self._first_ready = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="chatmodel-sse-run", daemon=False)

    def start(self) -> RunPump:
        with _running_lock:
            _running.add(self)
        self._thread.start()
        return self

    def first_chunk(self, timeout: float | None = None) -> LLMStreamResponse | None:
        """The run's first chunk: the first delta, or a final chunk when the run failed or was refused."""
        self._first_ready.wait(timeout)
        return self._first

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the producer -----------------------------------------------------------------------------

    def _pump(self) -> None:
        try:
            for chunk in self._chunks():
                if self._first is None:
                    self._first = chunk
                    self._first_ready.set()
                frames = [self._render(e, chunk if chunk.is_final else None) for e in chunk.events or ()]
                self._push(frames)
                if chunk.is_final:
                    break
        except Exception:  # run_stream never raises; this is a last guard so the reader is not left waiting
            logger.exception("chatmodel: the streamed run failed outside the pipeline")
            failed = events.RunEvents("", None).make(
                events.RUN_FAILED, status=None, error="internal_error", error_log="The stream failed on the server."
            )
            self._push([self._render(failed)])
        finally:
            self._first_ready.set()
            with self._cond:
                self._ended = True
            self._wake()
            # This thread's database connection is its own: close it rather than leak it.
            connections.close_all()
            with _running_lock:
                _running.discard(self)

    def _push(self, frames: list[bytes]) -> None:
        if not frames:
            return
        with self._cond:
            self._frames.extend(frames)
        self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, event in waiters:
            # RuntimeError: that reader's loop has closed.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # --- the readers ------------------------------------------------------------------------------

    def _take(self, index: int) -> tuple[list[bytes], bool]:
        with self._cond:
            return self._frames[index:], self._ended

    def frames(self, keepalive: float) -> Iterator[bytes]:
        """The frames as they come, for a WSGI response; a comment line after ``keepalive`` seconds of silence."""
        index = 0
        while True:
            with self._cond:
                if len(self._frames) <= index and not self._ended:
                    self._cond.wait(timeout=keepalive)
            new, ended = self._take(index)
            index += len(new)
            if new:
                yield b"".join(new)
            elif ended:
                return
            else:
                yield _KEEPALIVE

    async def aframes(self, keepalive: float) -> AsyncIterator[bytes]:
        """The frames as they come, for an ASGI response."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        waiter = (loop, wake)
        with self._cond:
            self._waiters.add(waiter)
        index = 0
        try:
            while True:
                wake.clear()
                new, ended = self._take(index)
                index += len(new)
                if new:
                    yield b"".join(new)
                    continue
                if ended:
                    return
                try:
                    await asyncio.wait_for(wake.wait(), timeout=keepalive)
                except TimeoutError:
                    yield _KEEPALIVE
        finally:
            # The client may have gone: only the reader stops, the pump runs on.
            with self._cond:
                self._waiters.discard(waiter)


def response(pump: RunPump, *, asynchronous: bool, keepalive: float) -> StreamingHttpResponse:
    """The streaming response reading ``pump``."""
    content = pump.aframes(keepalive) if asynchronous else pump.frames(keepalive)
    resp = StreamingHttpResponse(content, content_type=CONTENT_TYPE)
    resp["Cache-Control"] = "no-cache"
    # Ask nginx (and proxies that honour it) not to buffer the stream.
    resp["X-Accel-Buffering"] = "no"
    return resp


def wait_idle(timeout: float = 10.0) -> bool:
    """Wait until every streamed run of this process has ended; True when they have (for tests and shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _running_lock:
            pumps = list(_running)
        if not pumps:
            return True
        for pump in pumps:
            if not pump.join(max(0.0, deadline - time.monotonic())):
                return False


def _last_event(value: str | None) -> tuple[str, int]:
    """``Last-Event-ID`` as the frames write it (``<run_id>:<seq>``); ("", 0) when absent or malformed."""
    run_id, _, seq = (value or "").partition(":")
    return (run_id, int(seq)) if seq.isdigit() and len(seq) < 10 else ("", 0)


async def follow(
    session: Any,
    run: Any,
    *,
    last_event_id: str | None,
    keepalive: float,
    render: Callable[..., bytes] = frame,
) -> AsyncIterator[bytes]:
    """The live events of ``run``: its text so far (``run.snapshot``), then each later event, to its end.

    ``Last-Event-ID`` (``<run_id>:<seq>``) of a client that reconnects skips what it already has: when it is at or
    past the snapshot, only the events after it are sent. On any worker: a run streaming in another process is
    asked for its snapshot through the channel layer (``services.live``). ``render`` turns an event into bytes.
    """
    from ..services import live

    events.bind_loop()  # runs on threads of this server publish through this loop from now on
    layer = events.channel_layer()
    run_id = str(run.uuid)
    if layer is None:
        yield render(live.stored_snapshot(run))
        return
    channel = await layer.new_channel()
    group = events.group_name(session.uuid)
    await layer.group_add(group, channel)
    try:
        held: list[dict[str, Any]] = []
        snap = await live.snapshot(run, reply_to=channel)
        deadline = time.monotonic() + live.SNAPSHOT_TIMEOUT
        while snap is None:
            try:
                message = await asyncio.wait_for(layer.receive(channel), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                snap = live.stored_snapshot(run)
                break
            if message.get("type") == live.SNAPSHOT_REPLY and message.get("run_id") == run_id:
                snap = message.get("snapshot") or live.stored_snapshot(run)
            elif message.get("type") == events.GROUP_MESSAGE_TYPE:
                held.append(message["event"])
        last_run, last_seq = _last_event(last_event_id)
        floor = snap.get("seq") or 0
        if last_run == run_id and last_seq >= floor:
            floor = last_seq
        else:
            yield render(snap)
        pending = list(held)
        while True:
            for event in pending:
                if event.get("run_id") != run_id:
                    continue
                if event.get("seq", 0) > floor:
                    yield render(event)
                if event["type"] in TERMINAL_EVENTS:
                    return  # the run is over, even for a client that said it had it all
            pending = []
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=keepalive)
            except TimeoutError:
                yield _KEEPALIVE
                continue
            if message.get("type") == events.GROUP_MESSAGE_TYPE:
                pending.append(message["event"])
    finally:
        await layer.group_discard(group, channel)


def follow_response(session: Any, run: Any, *, last_event_id: str | None, keepalive: float) -> StreamingHttpResponse:
    """The streaming response of ``follow``."""
    resp = StreamingHttpResponse(
        follow(session, run, last_event_id=last_event_id, keepalive=keepalive), content_type=CONTENT_TYPE
    )
    resp["Cache-Control"] = "no-cache"
    resp["X-Accel-Buffering"] = "no"
    return resp
