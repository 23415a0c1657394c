"""The run event format, shared by Server-Sent Events and websockets, and its fan-out.

Every event is a JSON object ``{"type", "session_uuid", "run_id", "seq", ...}``;
``seq`` counts the events of one run from 1 (``messages.added`` events have
``run_id`` null and their own count). The pipeline publishes every event to the
channel-layer group of its session, so a run started anywhere (Python, REST,
another socket, another worker) reaches every socket watching that session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

logger = logging.getLogger("chatmodel_app")

RUN_STARTED = "run.started"
TEXT_DELTA = "run.delta"
TOOL_CALL_DELTA = "run.tool_call_delta"
RUN_COMPLETED = "run.completed"
RUN_FAILED = "run.failed"
MESSAGES_ADDED = "messages.added"
EVENT_TYPES = (RUN_STARTED, TEXT_DELTA, TOOL_CALL_DELTA, RUN_COMPLETED, RUN_FAILED, MESSAGES_ADDED)

# The consumer method the channel layer calls for a group message: type "chatmodel.event".
GROUP_MESSAGE_TYPE = "chatmodel.event"


def group_name(session_uuid: Any) -> str:
    """The channel-layer group of a session (built from the uuid only)."""
    return f"chatmodel.session.{str(session_uuid).replace('-', '')}"


try:
    from channels.layers import InMemoryChannelLayer
except ImportError:  # channels not installed

    class InMemoryChannelLayer:  # type: ignore[no-redef]
        """Stands in for isinstance checks."""


def channel_layer() -> Any:
    """The default channel layer, or None when there is none (runs never fail for want of one)."""
    try:
        from channels.layers import get_channel_layer
    except ImportError:  # channels not installed: nothing to fan out to
        return None
    try:
        return get_channel_layer()
    except Exception:  # misconfigured CHANNEL_LAYERS must not break runs
        logger.exception("chatmodel: channel layer unavailable")
        return None


# The event loop of this process's ASGI server (set when a socket connects). The in-memory
# channel layer's queues belong to it, so sync code on plain threads (the SSE pump) must
# publish through it rather than through a loop of its own.
_home_loop: asyncio.AbstractEventLoop | None = None


_home_pid = 0


def bind_loop() -> None:
    """Remember the running loop as the one the channel layer lives on (call from async code)."""
    global _home_loop, _home_pid
    _home_loop, _home_pid = asyncio.get_running_loop(), os.getpid()


_private: asyncio.AbstractEventLoop | None = None
_private_pid = 0
_private_lock = threading.Lock()


def _private_loop() -> asyncio.AbstractEventLoop:
    """This process's publishing loop, on a daemon thread, started on first use (again in a forked child,
    which inherits the loop object but not the thread that ran it)."""
    global _private, _private_pid
    with _private_lock:
        if _private is None or _private.is_closed() or _private_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="chatmodel-publish", daemon=True).start()
            _private, _private_pid = loop, os.getpid()
        return _private


def publish(event: dict[str, Any]) -> None:
    """Send an event to its session's group from sync code (best effort: never raises)."""
    layer = channel_layer()
    if layer is None:
        return
    message = {"type": GROUP_MESSAGE_TYPE, "event": event}
    group = group_name(event["session_uuid"])
    try:
        home = _home_loop if _home_pid == os.getpid() else None  # a forked child's copy runs nowhere
        if home is not None and home.is_running() and not home.is_closed():
            try:
                on_home = asyncio.get_running_loop() is home
            except RuntimeError:
                on_home = False
            future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), home)
            if not on_home:
                future.result(timeout=10)
            return
        if isinstance(layer, InMemoryChannelLayer):
            # No ASGI server runs in this process (no socket ever bound a loop): nobody can be listening.
            return
        # A process without a server loop (a management command, a WSGI worker) publishing to a shared
        # layer: one private loop, kept, rather than a new loop and thread per event (async_to_sync).
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _private_loop()).result(timeout=10)
    except Exception:
        logger.exception("chatmodel: could not publish %s", event.get("type"))


async def apublish(event: dict[str, Any]) -> None:
    """Send an event to its session's group from async code (best effort: never raises)."""
    layer = channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group_name(event["session_uuid"]), {"type": GROUP_MESSAGE_TYPE, "event": event})
    except Exception:
        logger.exception("chatmodel: could not publish %s", event.get("type"))


class RunEvents:
    """Builds the numbered events of one run."""

    def __init__(self, session_uuid: str, run_id: str | None) -> None:
        self.session_uuid = session_uuid
        self.run_id = run_id
        self.seq = 0
        self._lock = threading.Lock()

    def make(self, type_: str, **data: Any) -> dict[str, Any]:
        """The next event of this run."""
        with self._lock:
            self.seq += 1
            seq = self.seq
        return {"type": type_, "session_uuid": self.session_uuid, "run_id": self.run_id, "seq": seq, **data}
