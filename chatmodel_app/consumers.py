"""The session websocket: every socket on a session sees its runs live, and can add messages, run and cancel.

The consumer only translates frames to ``services`` calls. It never forwards run chunks
itself: the pipeline publishes every run event (and every ``messages.added``) to the
session's channel-layer group, and every socket on the session, the one that started
the run included, receives them from there. So a run started by REST, another socket or
another worker looks the same as one started here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ImproperlyConfigured

from . import events, services
from .api.permissions import session_access
from .conf import conf
from .exceptions import ChatModelError
from .models import Session
from .selectors import session_get
from .ws_auth import AUTH_FAILED_KEY

logger = logging.getLogger("chatmodel_app")

# Close codes of a refused socket (sent before accept(); the README's websocket section says what clients see).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404

# Socket-local events (only the socket concerned gets them); run events come from events.py.
PONG = "pong"
ERROR = "error"

_RUN_OPTIONS = frozenset({"type", "request_id", "stream", "functions", "tools"})
_REQUEST_ID_MAX = 200

# Runs started by sockets, referenced here so they finish (and are stored) after their socket is gone.
_runs: set[asyncio.Task] = set()


def _request_id(value: Any) -> str | int | None:
    """The client's ``request_id`` to echo, when it is a short string or an integer."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value if len(str(value)) <= _REQUEST_ID_MAX else None


def _session_access(user: Any, session_uuid: Any) -> tuple[Session, bool] | None:
    """The session and whether ``user`` may change it (else only watch); None when they may not see it."""
    try:
        session = session_get(session_uuid=session_uuid)
    except ChatModelError:
        return None
    # The REST API's rule, so a session is reachable (or not) the same way through both doors.
    access = session_access(user, session)
    if access is None:
        return None
    return session, access == "write"


class RateLimit:
    """A token bucket: ``"<n>/<s|m|h|d>"`` (DRF's throttle-rate format) frames, refilled evenly."""

    _PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def __init__(self, rate: str | None) -> None:
        self.capacity = 0.0
        self.per_second = 0.0
        if rate:
            try:
                num, period = rate.split("/")
                self.capacity = float(int(num))
                self.per_second = self.capacity / self._PERIODS[period.strip()[0].lower()]
            except (ValueError, KeyError, IndexError):
                raise ImproperlyConfigured(
                    f'CHATMODEL_WS_RATE_LIMIT must look like "120/min" or be None; got {rate!r}.'
                ) from None
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> float:
        """Spend one frame; return 0.0 when allowed, else the seconds until one is."""
        if not self.capacity:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


class SessionConsumer(AsyncJsonWebsocketConsumer):
    """``ws/chatmodel/sessions/<uuid>/``: live run events of one session; add_messages, run, cancel, ping."""

    async def connect(self) -> None:
        """Refuse (before accept) a socket that is not authenticated or may not see the session; else join."""
        self.session: Session | None = None
        self.group: str | None = None
        self.can_act = False
        self.connected = False
        self.local_seq = 0
        self.tasks: set[asyncio.Task] = set()
        self.rate_limit = RateLimit(conf.WS_RATE_LIMIT)
        events.bind_loop()
        user = self.scope.get("user")
        authenticated = user is not None and user.is_authenticated
        if self.scope.get(AUTH_FAILED_KEY) or (not authenticated and not conf.API_ALLOW_ANONYMOUS):
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        access = await database_sync_to_async(_session_access)(user, self.scope["url_route"]["kwargs"]["session_uuid"])
        if access is None:
            # The same code for "no such session" and "not yours", so uuids cannot be probed.
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.session, self.can_act = access
        self.group = events.group_name(self.session.uuid)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.connected = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the group; the socket's runs go on and are stored (unless streamed runs follow their socket)."""
        # A streamed run of this socket sees this flag at its next chunk (see _drive_run).
        self.connected = False
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # --- frames in ----------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Check a frame (rate, size, JSON object) before it is dispatched; a bad one gets an error event."""
        wait = self.rate_limit.take()
        if wait:
            await self.send_error(
                "rate_limited", f"Too many frames; try again in {wait:.1f} s.", retry_after=round(wait, 3)
            )
            return
        if text_data is None:
            await self.send_error("invalid_frame", "Send JSON objects as text frames, not binary frames.")
            return
        limit = conf.WS_MAX_FRAME_BYTES
        if len(text_data) > limit or len(text_data.encode("utf-8")) > limit:
            await self.send_error("frame_too_large", f"Frames may be at most {limit} bytes.")
            return
        try:
            content = json.loads(text_data)
        except ValueError as exc:
            await self.send_error("invalid_json", f"The frame is not JSON: {exc}.")
            return
        if not isinstance(content, dict):
            await self.send_error("invalid_frame", 'A frame is a JSON object with a "type".')
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        """Dispatch a client frame by its ``type``."""
        request_id = _request_id(content.get("request_id"))
        handler = {
            "add_messages": self.on_add_messages,
            "run": self.on_run,
            "cancel": self.on_cancel,
            "ping": self.on_ping,
        }.get(content.get("type"))
        if handler is None:
            await self.send_error(
                "unknown_type",
                f"Unknown frame type {content.get('type')!r}; expected add_messages, run, cancel or ping.",
                request_id=request_id,
            )
            return
        if handler is not self.on_ping and not self.can_act:
            message = "Staff may watch other users' sessions but not change them."
            await self.send_error("forbidden", message, request_id=request_id)
            return
        try:
            await handler(content, request_id)
        except ChatModelError as exc:
            await self.send_error(exc.code, str(exc), request_id=request_id)
        except Exception:
            logger.exception("chatmodel websocket: %s failed", content.get("type"))
            await self.send_error("internal_error", "The server failed on this frame.", request_id=request_id)

    async def on_add_messages(self, content: dict[str, Any], request_id: Any) -> None:
        """Store the messages; every socket gets the ``messages.added`` event from the pipeline."""
        await database_sync_to_async(services.messages_add)(
            session=self.session, messages=content.get("messages"), allowed_roles=conf.API_ALLOWED_ROLES
        )

    async def on_run(self, content: dict[str, Any], request_id: Any) -> None:
        """Start a run in a task of its own, so this socket keeps reading frames (cancel) meanwhile."""
        stream = content.get("stream", True)
        if not isinstance(stream, bool):
            await self.send_error("invalid_params", "stream must be true or false.", request_id=request_id)
            return
        params = {k: v for k, v in content.items() if k not in _RUN_OPTIONS}
        task = asyncio.create_task(
            self._drive_run(
                stream=stream,
                functions=content.get("functions"),
                tools=content.get("tools"),
                params=params,
                request_id=request_id,
            )
        )
        _runs.add(task)
        self.tasks.add(task)
        task.add_done_callback(_runs.discard)
        task.add_done_callback(self.tasks.discard)

    async def on_cancel(self, content: dict[str, Any], request_id: Any) -> None:
        """Ask the session's active run to stop; its ``run.completed`` (status cancelled) follows."""
        cancelled = await database_sync_to_async(services.run_cancel)(session=self.session)
        if cancelled is None:
            await self.send_error("no_active_run", "No run is in progress on this session.", request_id=request_id)

    async def on_ping(self, content: dict[str, Any], request_id: Any) -> None:
        """Answer ``pong``."""
        await self.send_local(PONG, request_id=request_id)

    async def _drive_run(self, *, stream: bool, functions: Any, tools: Any, params: dict, request_id: Any) -> None:
        # The run's events reach every socket (this one too) through the group; here the run is only
        # driven to its end, even after this socket is gone (an abandoned stream would be a cancel).
        try:
            if stream:
                chunks = services.arun_stream(session=self.session, functions=functions, tools=tools, params=params)
                final = None
                try:
                    async for chunk in chunks:
                        final = chunk
                        if not self.connected and conf.WS_RUNS_FOLLOW_SOCKET:
                            break
                finally:
                    # After a break this abandons the stream, which the pipeline stores as cancelled.
                    await chunks.aclose()
            else:
                final = await services.arun(session=self.session, functions=functions, tools=tools, params=params)
        except Exception:
            logger.exception("chatmodel websocket: run failed unexpectedly")
            await self.send_error("internal_error", "The run failed unexpectedly.", request_id=request_id)
            return
        if final is not None and final.error and final.run_uuid is None:
            # Refused before it began (busy, bad params): nothing was published, so tell the requester.
            await self.send_error(final.error_code or "error", final.error_log or "", request_id=request_id)

    # --- events out ---------------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Forward group events straight away; everything else as Channels does."""
        if message.get("type") == events.GROUP_MESSAGE_TYPE:
            # Channels runs close_old_connections on the worker's one database thread before every
            # handler; forwarding an event touches no database, and under many streams every delta
            # would queue behind every run's queries for it (bench item 4).
            await self.chatmodel_event(message)
            return
        await super().dispatch(message)

    async def chatmodel_event(self, message: dict[str, Any]) -> None:
        """A run or messages event published to the session's group: pass it on as is."""
        await self.send_json(message["event"])

    async def send_local(self, type_: str, **data: Any) -> None:
        """Send an event to this socket only (``run_id`` null, ``seq`` counting this socket's own events)."""
        if not self.connected:
            return
        self.local_seq += 1
        event = {
            "type": type_,
            "session_uuid": str(self.session.uuid) if self.session else None,
            "run_id": None,
            "seq": self.local_seq,
            **data,
        }
        if event.get("request_id") is None:
            event.pop("request_id", None)
        await self.send_json(event)

    async def send_error(self, code: str, message: str, *, request_id: Any = None, **data: Any) -> None:
        """An ``error`` event to this socket; the socket stays open."""
        await self.send_local(ERROR, code=code, message=message, request_id=request_id, **data)
