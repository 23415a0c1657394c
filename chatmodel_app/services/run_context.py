"""What a run carries from its claim to its end: its events (coalesced deltas, the snapshot for rejoin), timings."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import events
from ..conf import conf
from ..models import Run, Session, Version
from . import leases, live


@dataclass
class RunContext:
    """Everything a run carries from its claim to its end."""

    run: Run
    session: Session
    version: Version
    request: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    events: events.RunEvents | None = None
    # Events made but not yet published; the driver drains them (sync or async).
    outbox: list[dict[str, Any]] = field(default_factory=list)
    # Text deltas held back to be published as one event (CHATMODEL_STREAM_COALESCE_MS), and when one last went out.
    held: list[str] = field(default_factory=list)
    delta_sent_at: float | None = None
    coalesce_seconds: float = field(default_factory=lambda: conf.STREAM_COALESCE_MS / 1000)
    # What the run's events have carried so far, for a client that joins mid-run (live.py).
    sent_text: list[str] = field(default_factory=list)
    sent_tool_deltas: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Whether messages were enqueued meanwhile (double-texting "enqueue"); None: not known, look.
    queue_waiting: bool | None = None

    def emit_delta(self, text: str) -> None:
        """A text delta: the first goes out at once, then at most one event per coalescing window."""
        self.held.append(text)
        now = time.monotonic()
        if self.delta_sent_at is None or now - self.delta_sent_at >= self.coalesce_seconds:
            self._flush_held()
            self.delta_sent_at = now

    def _flush_held(self) -> None:
        if self.held:
            delta, self.held = "".join(self.held), []
            self._emit(events.TEXT_DELTA, delta=delta)

    def emit(self, type_: str, **data: Any) -> dict[str, Any]:
        """An event; held text deltas go out before it, so the order is kept."""
        self._flush_held()
        return self._emit(type_, **data)

    def _emit(self, type_: str, **data: Any) -> dict[str, Any]:
        with self.lock:
            if self.events is None:
                self.events = events.RunEvents(str(self.session.uuid), self.run_uuid)
            event = self.events.make(type_, **data)
            if type_ == events.TEXT_DELTA:
                self.sent_text.append(data["delta"])
            elif type_ == events.TOOL_CALL_DELTA:
                self.sent_tool_deltas.extend(data["deltas"])
        self.outbox.append(event)
        return event

    def sent_so_far(self) -> tuple[int, str]:
        """The seq of the last event made, and the text the events carried up to it."""
        with self.lock:
            return (self.events.seq if self.events else 0), "".join(self.sent_text)

    def snapshot(self) -> dict[str, Any]:
        """The run so far as one event: its text and tool-call deltas up to event ``seq``, read together."""
        with self.lock:
            return {
                "type": live.SNAPSHOT,
                "session_uuid": str(self.session.uuid),
                "run_id": self.run_uuid,
                "seq": self.events.seq if self.events else 0,
                "status": Run.Status.IN_PROGRESS,
                "content": "".join(self.sent_text),
                "tool_call_deltas": list(self.sent_tool_deltas),
                "model": self.run.model,
            }

    def drain(self) -> list[dict[str, Any]]:
        out, self.outbox = self.outbox, []
        return out

    def publish(self) -> list[dict[str, Any]]:
        """Publish pending events from sync code; return them."""
        out = self.drain()
        if conf.PUBLISH_EVENTS:
            for event in out:
                events.publish(event)
        return out

    async def apublish(self) -> list[dict[str, Any]]:
        """Publish pending events from async code; return them."""
        out = self.drain()
        if conf.PUBLISH_EVENTS:
            for event in out:
                await events.apublish(event)
        return out

    @property
    def run_uuid(self) -> str:
        return str(self.run.uuid)

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def cancelled(self) -> bool:
        """Whether someone asked this run to stop (here, or in another process as of the last beat)."""
        return leases.keeper.cancelled(self.run_uuid)
