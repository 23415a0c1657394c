"""Rejoining a live run: the text so far, then the live events, with no gap and no duplicate.

Every streamed run registers here while it runs in this process. Its snapshot is the run's
text and tool-call deltas up to event ``seq`` K, read atomically with K; a client that takes it
drops the run's events numbered K or less and applies the rest. A client on another worker
process asks the run's worker over the channel layer (its ``worker_channel``, on the Run row):
the worker sends the snapshot to the client's own channel, behind the events it already sent
there, so the order holds. When the run's worker cannot answer (it died, or runs without an
event loop), the snapshot is the Run row's ``partial_content``, saved at each lease beat.

Process-wide state: ``_runs`` (this process's live streams) and ``_worker`` (its control channel
and the task that listens on it, started on the ASGI server's loop by ``listen``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .. import events
from ..models import Run, Session
from ..types import LLMStreamResponse
from . import leases

if TYPE_CHECKING:
    from .run_context import RunContext

logger = logging.getLogger("chatmodel_app")

SNAPSHOT = "run.snapshot"
# Channel-layer message types of the worker control channel.
SNAPSHOT_REQUEST = "chatmodel.snapshot_request"
SNAPSHOT_REPLY = "chatmodel.snapshot"
CANCEL_REQUEST = "chatmodel.cancel"
# Seconds a client waits for another worker's snapshot before it reads the Run row instead.
SNAPSHOT_TIMEOUT = 2.0

_runs: dict[str, RunContext] = {}
_lock = threading.Lock()


class _Worker:
    channel: str = ""
    task: asyncio.Task[None] | None = None


_worker = _Worker()


def register(ctx: RunContext) -> None:
    """A stream of this process starts."""
    with _lock:
        _runs[ctx.run_uuid] = ctx


def unregister(run_uuid: str) -> None:
    with _lock:
        _runs.pop(run_uuid, None)


def worker_channel() -> str:
    """This process's control channel ("" when it listens on none)."""
    return _worker.channel


def local_snapshot(run_uuid: str) -> dict[str, Any] | None:
    """The snapshot event of a run streaming in this process, or None."""
    with _lock:
        ctx = _runs.get(run_uuid)
    return ctx.snapshot() if ctx is not None else None


def stored_snapshot(run: Run) -> dict[str, Any]:
    """The snapshot from the Run row: the text saved at the last beat (events after it may be missed)."""
    return {
        "type": SNAPSHOT,
        "session_uuid": str(run.session.uuid),
        "run_id": str(run.uuid),
        "seq": run.partial_seq or 0,
        "status": run.status,
        "content": run.partial_content,
        "tool_call_deltas": [],
        "model": run.model,
    }


def run_with_session(*, run_id: str) -> Run | None:
    """The run (with its session), or None."""
    return Run.objects.select_related("session").filter(uuid=run_id).first()


def active_run(*, session_id: int) -> Run | None:
    """The session's run in progress, if any.

    A run whose lease expired (its worker died) is not: it is ended here as ``lease_expired``, with the text it
    had streamed by its last beat, and what it left queued is stored, so a rejoin finds the session idle.
    """
    row = Session.objects.filter(pk=session_id).values_list("active_run_uuid", "lease_expires_at").first()
    if row is None or row[0] is None:
        return None
    now = timezone.now()
    if row[1] is not None and row[1] < now:
        leases.reap(session_id=session_id, now=now)
        return None
    return Run.objects.select_related("session").filter(uuid=row[0], status=Run.Status.IN_PROGRESS).first()


async def snapshot(run: Run, *, reply_to: str | None = None) -> dict[str, Any] | None:
    """The run's snapshot: from this process, else (with ``reply_to``) asked of its worker, else from the row.

    With ``reply_to`` and a run on another worker, the snapshot arrives later on ``reply_to`` as a
    ``chatmodel.snapshot`` message and this returns None; the caller waits for it (``SNAPSHOT_TIMEOUT``).
    """
    local = local_snapshot(str(run.uuid))
    if local is not None:
        return local
    layer = events.channel_layer()
    if reply_to and layer is not None and run.worker_channel and run.worker_channel != _worker.channel:
        try:
            await layer.send(
                run.worker_channel, {"type": SNAPSHOT_REQUEST, "run_id": str(run.uuid), "reply_to": reply_to}
            )
            return None
        except Exception:
            logger.warning("chatmodel: could not ask worker %s for run %s", run.worker_channel, run.uuid)
    return stored_snapshot(run)


async def send_cancel(run: Run, *, rollback: bool = False) -> None:
    """Tell the run's worker at once (the database flag reaches it at its next beat anyway)."""
    layer = events.channel_layer()
    if layer is None or not run.worker_channel or run.worker_channel == _worker.channel:
        return
    try:
        message = {"type": CANCEL_REQUEST, "run_id": str(run.uuid), "rollback": rollback}
        await layer.send(run.worker_channel, message)
    except Exception:
        logger.warning("chatmodel: could not send a cancel to worker %s", run.worker_channel)


async def listen() -> None:
    """Start this process's control channel on the running loop (once; call from async code)."""
    if _worker.task is not None and not _worker.task.done():
        return
    layer = events.channel_layer()
    if layer is None:
        return
    # The default prefix on purpose: channels-redis serves every "specific" channel of a process from one shared
    # receive loop per prefix, and a channel with a prefix of its own would hold that loop's lock from the sockets.
    _worker.channel = await layer.new_channel()
    _worker.task = asyncio.get_running_loop().create_task(_serve(layer, _worker.channel))


async def _serve(layer: Any, channel: str) -> None:
    while True:
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("chatmodel: the worker control channel failed")
            await asyncio.sleep(1.0)
            continue
        kind, run_id = message.get("type"), str(message.get("run_id", ""))
        if kind == CANCEL_REQUEST:
            leases.keeper.cancel(run_id, rollback=bool(message.get("rollback")))
        elif kind == SNAPSHOT_REQUEST and isinstance(message.get("reply_to"), str):
            snap = local_snapshot(run_id)
            try:
                await layer.send(message["reply_to"], {"type": SNAPSHOT_REPLY, "run_id": run_id, "snapshot": snap})
            except Exception:
                logger.warning("chatmodel: could not answer a snapshot request for run %s", run_id)


def follow(*, session: Any, poll_seconds: float = 0.05) -> Iterator[LLMStreamResponse]:
    """Rejoin the session's run in progress from Python (the ORM shim): its text so far, the rest, the end.

    A run of this process is read from its live state, so nothing is missed; a run of another process
    from the Run row, which its worker saves at each lease beat (so its text arrives in beat-sized pieces).
    Nothing is yielded when no run is in progress. Polls (a caller thread has no channel layer to listen on).
    """
    run = active_run(session_id=session.pk)
    if run is None:
        return
    run_id, sent = str(run.uuid), ""
    while True:
        snap = local_snapshot(run_id)
        row = Run.objects.filter(pk=run.pk).values("status", "partial_content").get()
        text = snap["content"] if snap is not None else row["partial_content"]
        if len(text) > len(sent) and text.startswith(sent):
            yield LLMStreamResponse(
                content=text[len(sent) :],
                status=Run.Status.IN_PROGRESS,
                session_uuid=str(session.uuid),
                run_uuid=run_id,
                model=run.model,
            )
            sent = text
        if snap is None and row["status"] != Run.Status.IN_PROGRESS:
            yield _final_of(run.pk, session, sent)
            return
        time.sleep(poll_seconds)


def _final_of(run_pk: int, session: Any, sent: str) -> LLMStreamResponse:
    """The final chunk of a rejoined run, from its stored record (and the rest of its reply, if any)."""
    from ..models import Message

    run = Run.objects.get(pk=run_pk)
    message = Message.objects.filter(run=run).first()
    usage = None
    if run.prompt_tokens is not None or run.completion_tokens is not None:
        prompt, completion = run.prompt_tokens or 0, run.completion_tokens or 0
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    failed = run.status in (Run.Status.FAILED, Run.Status.INCOMPLETE)
    # The text stored after the last snapshot the caller saw (the run may end between two polls).
    stored = (message.content or "") if message else (run.partial_content or "")
    rest = stored[len(sent) :] if stored.startswith(sent) else ""
    return LLMStreamResponse(
        content=rest,
        is_final=True,
        error=failed,
        error_code=run.error or None if failed else None,
        error_log=run.error_log or None if failed else None,
        status=run.status,
        finish_reason=run.finish_reason or None,
        usage=usage,
        cost=run.cost,
        model=run.model,
        session_uuid=str(session.uuid),
        run_uuid=str(run.uuid),
        message_id=message.pk if message else None,
        message_seq=message.seq if message else None,
    )
