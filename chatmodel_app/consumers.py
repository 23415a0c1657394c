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

from . import events, services, validation
from .access import session_access
from .api import throttling
from .conf import conf
from .exceptions import ChatModelError
from .models import Session
from .selectors import session_get
from .services import double_texting, live
from .types import LLMResponse
from .ws_auth import AUTH_FAILED_KEY, login_still_valid
from .ws_branches import BranchFrames

logger = logging.getLogger("chatmodel_app")

# Close codes of a refused socket (sent before accept(); the README's websocket section says what clients see).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404

# Socket-local events (only the socket concerned gets them); run events come from events.py.
PONG = "pong"
ERROR = "error"
RESUMED = "resumed"
QUEUED = "messages.queued"

# The envelope of every frame; the rest of a run frame is the run request, as a REST run's body.
_FRAME_KEYS = frozenset({"type", "request_id"})
_REQUEST_ID_MAX = 200
# Seconds between checks that a socket's login still holds (its token, or its browser session; one or two
# queries, at the next frame): a deleted token or a logout stops its open sockets within this time.
TOKEN_RECHECK_SECONDS = 5.0
# Deeper frames are refused before any handler sees them (the fields' own limits are validation.MAX_JSON_DEPTH).
_FRAME_MAX_DEPTH = 512

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


class SessionConsumer(BranchFrames, AsyncJsonWebsocketConsumer):
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
        self.token_checked = time.monotonic()
        events.bind_loop()
        user = self.scope.get("user")
        authenticated = user is not None and user.is_authenticated
        path = self.scope.get("path", "")
        if self.scope.get(AUTH_FAILED_KEY) or (not authenticated and not conf.API_ALLOW_ANONYMOUS):
            # The client sees only a refused handshake (HTTP 403): the log says why.
            why = "a bad or unknown token" if self.scope.get(AUTH_FAILED_KEY) else "no login and no token"
            logger.warning("chatmodel websocket refused (4401, not authenticated: %s): %s", why, path)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        access = await database_sync_to_async(_session_access)(user, self.scope["url_route"]["kwargs"]["session_uuid"])
        if access is None:
            # The same code for "no such session" and "not yours", so uuids cannot be probed.
            logger.warning("chatmodel websocket refused (4404, no such session, or not this user's): %s", path)
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.session, self.can_act = access
        self.group = events.group_name(self.session.uuid)
        # Rejoin state: per run, the seq of the snapshot this socket got (its events up to it are dropped),
        # and the events held back while another worker's snapshot is on its way.
        self.snapshot_seq: dict[str, int] = {}
        self.held: dict[str, list[dict[str, Any]]] = {}
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.connected = True
        await live.listen()
        await self.accept()
        # A socket that connects mid-run gets the text so far first, then the live events.
        await self.rejoin(announce_idle=False)

    @property
    def joined(self) -> Session:
        """The session of a socket that connect() accepted (frames only reach accepted sockets)."""
        assert self.session is not None
        return self.session

    async def disconnect(self, code: int) -> None:
        """Leave the group; the socket's runs go on and are stored (unless streamed runs follow their socket)."""
        # A streamed run of this socket sees this flag at its next chunk (see _drive_run).
        self.connected = False
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # --- frames in ----------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Check a frame (rate, size, JSON object) before it is dispatched; a bad one gets an error event."""
        if not await self.still_authenticated():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
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
            if validation.json_too_deep(content, _FRAME_MAX_DEPTH):
                raise ValueError(f"nested more than {_FRAME_MAX_DEPTH} levels deep")
        except (ValueError, RecursionError) as exc:
            # RecursionError: the decoder's answer to JSON nested too deep before Python 3.13.
            await self.send_error("invalid_json", f"The frame is not JSON: {exc}.")
            return
        if not isinstance(content, dict):
            await self.send_error("invalid_frame", 'A frame is a JSON object with a "type".')
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        """Dispatch a client frame by its ``type``."""
        request_id = _request_id(content.get("request_id"))
        frame_type = content.get("type")
        handlers = {
            "add_messages": self.on_add_messages,
            "run": self.on_run,
            "cancel": self.on_cancel,
            "ping": self.on_ping,
            "resume": self.on_resume,
            # Named conversations and feedback (on_feedback, on_update_session below).
            "feedback": self.on_feedback,
            "update_session": self.on_update_session,
            # Branches (ws_branches.py).
            "regenerate": self.on_regenerate,
            "edit_message": self.on_edit_message,
            "switch_branch": self.on_switch_branch,
            "get_path": self.on_get_path,
        }
        # Only a string can name a handler (a list is not even hashable).
        handler = handlers.get(frame_type) if isinstance(frame_type, str) else None
        if handler is None:
            await self.send_error(
                "unknown_type",
                f"Unknown frame type {frame_type!r}; expected add_messages, run, cancel, resume, ping, feedback, "
                "update_session, regenerate, edit_message, switch_branch or get_path.",
                request_id=request_id,
            )
            return
        # By name: bound methods are new objects on every access, so ``is`` would never match.
        if frame_type not in ("ping", "resume", "get_path") and not self.can_act:
            message = "You may watch this session but not change it."
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
        """Store the messages; every socket gets the ``messages.added`` event from the pipeline.

        While a run is active the version's double-texting policy applies (or ``double_texting``, if it
        allows that one): this socket gets ``messages.queued`` for an enqueue; a run it starts streams to all.
        """
        request = throttling.SocketRequest(self.scope)
        session, policy = self.session, content.get("double_texting")
        wait = await database_sync_to_async(throttling.submit_throttle_wait)(request, session, policy)
        if wait is not None:  # they would start a run: the run throttle, as for run frames
            await self.send_throttled(wait, request_id)
            return
        submitted = await database_sync_to_async(double_texting.messages_submit)(
            session=self.session,
            messages=content.get("messages"),
            allowed_roles=conf.API_ALLOWED_ROLES,
            double_texting=content.get("double_texting"),
        )
        if submitted.run == "queued":
            await self.send_local(QUEUED, double_texting=submitted.policy, request_id=request_id)
        elif submitted.run == "start":
            double_texting.astart_run(session=self.joined)

    async def on_run(self, content: dict[str, Any], request_id: Any) -> None:
        """Start a run in a task of its own, so this socket keeps reading frames (cancel) meanwhile."""
        # The REST run throttle, counted for the same user: one limit whichever door the runs come through.
        wait = await database_sync_to_async(throttling.run_throttle_wait)(throttling.SocketRequest(self.scope))
        if wait is not None:
            await self.send_throttled(wait, request_id)
            return
        stream = content.get("stream", True)
        if not isinstance(stream, bool):
            await self.send_error("invalid_params", "stream must be true or false.", request_id=request_id)
            return
        params = validation.run_request_params({k: v for k, v in content.items() if k not in _FRAME_KEYS})
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

    async def send_throttled(self, wait: float, request_id: Any) -> None:
        """The ``throttled`` error of a run refused by the run throttle (REST's 429), with its ``retry_after``."""
        message = throttling.throttled_message(wait)
        retry_after = round(wait, 3) if wait else None
        await self.send_error(throttling.THROTTLED_CODE, message, request_id=request_id, retry_after=retry_after)

    async def on_cancel(self, content: dict[str, Any], request_id: Any) -> None:
        """Ask the session's active run to stop; its ``run.completed`` (status cancelled) follows."""
        cancelled = await database_sync_to_async(services.run_cancel)(session=self.session)
        if cancelled is None:
            await self.send_error("no_active_run", "No run is in progress on this session.", request_id=request_id)

    async def on_ping(self, content: dict[str, Any], request_id: Any) -> None:
        """Answer ``pong``."""
        await self.send_local(PONG, request_id=request_id)

    async def on_resume(self, content: dict[str, Any], request_id: Any) -> None:
        """Send the active run's ``run.snapshot`` (its text so far), then its live events; or ``resumed`` if idle."""
        await self.rejoin(announce_idle=True, request_id=request_id)

    async def on_feedback(self, content: dict[str, Any], request_id: Any) -> None:
        """Rate the assistant message ``seq`` ("up"/"down", optional ``comment``; ``rating`` null takes it back).

        Every socket on the session gets ``feedback.updated`` from the pipeline.
        """
        from .services import feedback

        if content.get("rating") is None:
            await database_sync_to_async(feedback.feedback_delete)(session=self.session, seq=content.get("seq"))
            return
        await database_sync_to_async(feedback.feedback_set)(
            session=self.session,
            seq=content.get("seq"),
            rating=content.get("rating"),
            comment=content.get("comment", ""),
            user=self.scope.get("user"),
        )

    async def on_update_session(self, content: dict[str, Any], request_id: Any) -> None:
        """Rename (``title``) and/or archive (``archived``); every socket gets ``session.updated``."""
        from .services import conversations

        fields = {key: content[key] for key in ("title", "archived") if key in content}
        await database_sync_to_async(conversations.conversation_update)(session=self.session, **fields)

    async def still_authenticated(self) -> bool:
        """False once the login this socket was opened with has ended (checked every TOKEN_RECHECK_SECONDS)."""
        if time.monotonic() - self.token_checked < TOKEN_RECHECK_SECONDS:
            return True
        valid = await login_still_valid(self.scope)
        self.token_checked = time.monotonic()
        return valid

    # --- rejoining a live run -----------------------------------------------------------------

    async def rejoin(self, *, announce_idle: bool, request_id: Any = None) -> None:
        run = await database_sync_to_async(live.active_run)(session_id=self.joined.pk)
        if run is None:
            if announce_idle:
                await self.send_local(RESUMED, request_id=request_id)
            return
        run_id = str(run.uuid)
        self.held.setdefault(run_id, [])
        snap = await live.snapshot(run, reply_to=self.channel_name)
        if snap is not None:
            await self.apply_snapshot(snap)
            return
        # Asked the run's worker: its answer comes to this channel (chatmodel_snapshot); the row if it never does.
        asyncio.get_running_loop().call_later(
            live.SNAPSHOT_TIMEOUT, lambda: asyncio.ensure_future(self.snapshot_timeout(run))
        )

    async def apply_snapshot(self, snap: dict[str, Any]) -> None:
        run_id = snap["run_id"]
        held = self.held.pop(run_id, [])
        seq = snap.get("seq") or 0
        self.snapshot_seq[run_id] = seq
        await self.send_json(snap)
        for event in held:
            await self.forward(event)

    async def chatmodel_snapshot(self, message: dict[str, Any]) -> None:
        """The answer of the worker running a run this socket rejoins."""
        run_id = str(message.get("run_id"))
        if run_id not in self.held:
            return
        snap = message.get("snapshot")
        if snap is None:
            run = await database_sync_to_async(live.run_with_session)(run_id=run_id)
            snap = live.stored_snapshot(run) if run is not None else None
        if snap is None:
            for event in self.held.pop(run_id, []):
                await self.forward(event)
            return
        await self.apply_snapshot(snap)

    async def snapshot_timeout(self, run: Any) -> None:
        if str(run.uuid) in self.held:
            await self.chatmodel_snapshot({"run_id": str(run.uuid), "snapshot": None})

    async def _drive_run(self, *, stream: bool, functions: Any, tools: Any, params: dict, request_id: Any) -> None:
        # The run's events reach every socket (this one too) through the group; here the run is only
        # driven to its end, even after this socket is gone (an abandoned stream would be a cancel).
        try:
            if stream:
                chunks = services.arun_stream(session=self.joined, functions=functions, tools=tools, params=params)
                final: LLMResponse | None = None
                try:
                    async for chunk in chunks:
                        final = chunk
                        if not self.connected and conf.WS_RUNS_FOLLOW_SOCKET:
                            break
                finally:
                    # After a break this abandons the stream, which the pipeline stores as cancelled.
                    await chunks.aclose()
            else:
                final = await services.arun(session=self.joined, functions=functions, tools=tools, params=params)
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
        if message.get("type") == live.SNAPSHOT_REPLY:
            await self.chatmodel_snapshot(message)
            return
        await super().dispatch(message)

    async def chatmodel_event(self, message: dict[str, Any]) -> None:
        """A run or messages event published to the session's group: pass it on (after a rejoin, once)."""
        event = message["event"]
        run_id = event.get("run_id")
        if run_id in self.held:
            self.held[run_id].append(event)
            return
        await self.forward(event)

    async def forward(self, event: dict[str, Any]) -> None:
        """Send a run event on, unless the snapshot this socket got already carried it."""
        run_id = event.get("run_id")
        floor = self.snapshot_seq.get(run_id) if run_id else None
        if run_id and floor is not None:
            if event.get("seq", 0) <= floor:
                return
            if event.get("type") in (events.RUN_COMPLETED, events.RUN_FAILED):
                self.snapshot_seq.pop(run_id, None)
        await self.send_json(event)

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
