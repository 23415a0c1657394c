"""The one pipeline every front door uses: sessions, add_messages, and runs (sync, async, streamed).

A run: validate the request -> claim the session (a conditional UPDATE with a lease,
so one run per session holds across processes) -> pick the history that fits
(``context.context_select``) -> call the model (``llm``) -> store the assistant
message and the Run, release the claim, in one transaction. Sync and async share
every step but the model call; the async call is ``litellm.acompletion``.
Runs never raise: every failure becomes an ``LLMResponse`` with ``error=True``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Prefetch, Q
from django.utils import timezone

from . import context, events, llm
from .conf import conf
from .context import Selection, context_select, message_tokens, request_params, summary_message
from .exceptions import ChatModelError, ChatModelNotFound, InvalidMessages, InvalidParams, SessionBusy
from .llm import Completion, LLMError
from .llm.messages import (
    PYTHON_ROLES,
    answer_pending_calls,
    assign_tool_call_ids,
    normalise_tools,
    pending_calls,
    to_provider,
    validate_messages,
)
from .models import ChatModel, Message, PublishRecord, Run, Session, Version
from .selectors import VersionSpec, chat_model_get, message_json, session_get, version_resolve
from .signals import run_finished
from .types import LLMResponse, LLMStreamResponse, ToolCall

logger = logging.getLogger("chatmodel_app")

# Seconds between a streaming run's lease renewals and cross-process cancel checks.
_HEARTBEAT_SECONDS = 1.0
# Runs this process was asked to cancel; the stream loop checks it on every chunk.
_local_cancels: set[str] = set()


# --- sessions ---------------------------------------------------------------------------------


def session_create(
    *,
    chat_model: ChatModel,
    version: VersionSpec = "deploy",
    user: Any = None,
    metadata: Mapping[str, Any] | None = None,
    session_uuid: Any = None,
    is_playground: bool = False,
) -> Session:
    """Start a session pinned to the version ``version`` resolves to."""
    pinned = version if isinstance(version, Version) else version_resolve(chat_model=chat_model, spec=version)
    session = Session(
        chat_model=chat_model,
        version=pinned,
        user=user if getattr(user, "is_authenticated", False) else None,
        metadata=dict(metadata or {}),
        is_playground=is_playground,
    )
    if session_uuid is not None:
        session.uuid = uuid.UUID(str(session_uuid))
    session.save()
    return session


def session_get_or_create(
    *,
    name: str,
    session_uuid: Any,
    version: VersionSpec | Version = "deploy",
    user: Any = None,
) -> Session:
    """The session ``session_uuid`` of chat model ``name``, created (pinned to ``version``) on first use."""
    chat_model = chat_model_get(name=name)
    try:
        return session_get(session_uuid=session_uuid, chat_model=chat_model)
    except ChatModelError as exc:
        if "another chat model" in str(exc):
            raise
    try:
        with transaction.atomic():
            return session_create(chat_model=chat_model, version=version, user=user, session_uuid=session_uuid)
    except IntegrityError:
        # Another process created it first: use theirs.
        return session_get(session_uuid=session_uuid, chat_model=chat_model)


# --- messages ---------------------------------------------------------------------------------


class _Retry(Exception):
    """Rolls back an add_messages that repeats what a failed run was given."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages


def _same(stored: Message, new: Mapping[str, Any]) -> bool:
    return (stored.role, stored.content or "", stored.name) == (new["role"], new["content"] or "", new.get("name", ""))


def messages_add(
    *,
    session: Session,
    messages: Any,
    allowed_roles: frozenset[str] = PYTHON_ROLES,
    idempotency_key: str | None = None,
) -> list[Message]:
    """Append messages to the session in one transaction; raises InvalidMessages or SessionBusy.

    While a run is active the session is busy: messages are refused, never slipped in
    before the reply. Repeating exactly the messages that a failed run was given (the
    seed's retry loop) stores nothing new and returns the stored ones, and so does a
    call with the ``idempotency_key`` of one that was already stored (a client retrying
    after a lost response).
    """
    if idempotency_key is not None and not (isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 128):
        raise InvalidMessages("The Idempotency-Key must be 1 to 128 characters.")
    clean = validate_messages(
        messages,
        allowed_roles=allowed_roles,
        max_messages=conf.MAX_MESSAGES_PER_REQUEST,
        max_chars=conf.MAX_MESSAGE_CHARS,
    )
    model = session.version.model
    for message in clean:
        # The text is counted outside the transaction; the call ids and names given below are added there.
        message["token_count"] = context.count_content(model, message)
    n = len(clean)
    try:
        with transaction.atomic():
            first_seq, failed_run_seq = _allocate(session, n)
            if idempotency_key:
                # Checked under the session's row lock (taken by _allocate), so two retries cannot both store.
                stored = list(Message.objects.filter(session=session, idempotency_key=idempotency_key).order_by("seq"))
                if stored:
                    raise _Retry(stored)
            if conf.DEDUPE_RETRIED_MESSAGES and failed_run_seq == first_seq - 1 and first_seq > n:
                tail = list(
                    Message.objects.filter(session=session, seq__gte=first_seq - n, seq__lt=first_seq).order_by("seq")
                )
                if len(tail) == n and all(_same(s, m) for s, m in zip(tail, clean, strict=True)):
                    raise _Retry(tail)
            # The calls a result may answer: those of the newest assistant call message.
            pending = pending_calls([_log_dict(m) for m in _recent_for_calls(session, first_seq)])
            assign_tool_call_ids(clean, first_seq=first_seq)
            answer_pending_calls(clean, pending)
            for message in clean:
                message["token_count"] = message_tokens(model, message, content_tokens=message["token_count"])
            rows = [
                Message(
                    session=session,
                    seq=first_seq + i,
                    role=m["role"],
                    content=m["content"],
                    name=m.get("name", ""),
                    function_call=m.get("function_call"),
                    tool_calls=m.get("tool_calls"),
                    tool_call_id=m.get("tool_call_id", ""),
                    token_count=m["token_count"],
                    metadata=m.get("metadata") or {},
                    idempotency_key=idempotency_key or "",
                )
                for i, m in enumerate(clean)
            ]
            Message.objects.bulk_create(rows)
    except _Retry as retry:
        return retry.messages
    if conf.PUBLISH_EVENTS:
        event = events.RunEvents(str(session.uuid), None).make(
            events.MESSAGES_ADDED, messages=[message_json(m) for m in rows]
        )
        events.publish(event)
    return rows


def _allocate(session: Session, n: int) -> tuple[int, int | None]:
    """Reserve ``n`` seqs at the session's end (refused while a run holds it); return the first."""
    now = timezone.now()
    stale = (
        Session.objects.filter(pk=session.pk, active_run_uuid__isnull=False, lease_expires_at__lt=now)
        .values_list("active_run_uuid", flat=True)
        .first()
    )
    # Taking over an expired claim ends it, as _claim does: the run that held it (a stalled worker, not
    # necessarily a dead one) must not store its reply after messages it never saw; run_finish is conditional on it.
    updated = (
        Session.objects.filter(pk=session.pk)
        .filter(Q(active_run_uuid__isnull=True) | Q(lease_expires_at__lt=now))
        .update(next_seq=F("next_seq") + n, active_run_uuid=None, lease_expires_at=None, updated_at=now)
    )
    if not updated:
        if not Session.objects.filter(pk=session.pk).exists():
            raise ChatModelError(f"Session {session.uuid} was deleted.", code="session_not_found")
        raise SessionBusy(
            f"Session {session.uuid} is busy: a run is in progress. Wait for its reply (or cancel it) before adding "
            "messages."
        )
    if stale:
        _lease_expired(stale, now)
    next_seq, failed_run_seq = Session.objects.filter(pk=session.pk).values_list("next_seq", "failed_run_seq").get()
    return next_seq - n, failed_run_seq


def _recent_for_calls(session: Session, before: int) -> list[Message]:
    """The messages back to (and including) the newest non-result message."""
    out: list[Message] = []
    for row in Message.objects.filter(session=session, seq__lt=before).order_by("-seq")[:64]:
        out.append(row)
        if row.role not in ("tool", "function"):
            break
    return list(reversed(out))


def _log_dict(m: Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id}


# --- runs ---------------------------------------------------------------------------------------


@dataclass
class RunContext:
    """Everything a run carries from its claim to its end."""

    run: Run
    session: Session
    version: Version
    request: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    last_heartbeat: float = field(default_factory=time.monotonic)
    events: events.RunEvents | None = None
    # Events made but not yet published; the caller drains them (sync or async).
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, type_: str, **data: Any) -> dict[str, Any]:
        if self.events is None:
            self.events = events.RunEvents(str(self.session.uuid), self.run_uuid)
        event = self.events.make(type_, **data)
        self.outbox.append(event)
        return event

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

    def heartbeat_due(self) -> bool:
        return time.monotonic() - self.last_heartbeat >= _HEARTBEAT_SECONDS

    def cancelled_locally(self) -> bool:
        return self.run_uuid in _local_cancels


def validate_run_params(params: Mapping[str, Any], version: Version) -> dict[str, Any]:
    """Check caller-given sampling params: only the allowed ones, within the version's bounds."""
    allowed = conf.ALLOWED_PARAMS
    refused = sorted(set(params) - allowed)
    if refused:
        raise InvalidParams(
            f"These parameters cannot be set by a caller: {', '.join(refused)}. Allowed: {', '.join(sorted(allowed))}. "
            "The model, its URL and keys are the version's and the server's."
        )
    clean = dict(params)
    checks = {
        "temperature": (0.0, 2.0),
        "top_p": (0.0, 1.0),
        "presence_penalty": (-2.0, 2.0),
        "frequency_penalty": (-2.0, 2.0),
    }
    for name, (low, high) in checks.items():
        if name in clean and clean[name] is not None:
            value = clean[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidParams(f"{name} must be a number from {low} to {high}; got {value!r}.")
    for name in ("max_tokens", "max_completion_tokens"):
        if name in clean and clean[name] is not None:
            value = clean[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParams(f"{name} must be a positive integer; got {value!r}.")
            ceiling = version.params.get("max_tokens")
            if ceiling and value > ceiling:
                raise InvalidParams(f"{name} may be at most {ceiling} (the version's max_tokens); got {value}.")
    if clean.get("n", 1) != 1:
        raise InvalidParams("n must be 1: a run stores one reply.")
    return clean


def _claim(session: Session, run_uuid: uuid.UUID) -> bool:
    """Take the session for one run, unless another run holds an unexpired lease."""
    now = timezone.now()
    stale = (
        Session.objects.filter(pk=session.pk, active_run_uuid__isnull=False, lease_expires_at__lt=now)
        .values_list("active_run_uuid", flat=True)
        .first()
    )
    claimed = (
        Session.objects.filter(pk=session.pk)
        .filter(Q(active_run_uuid__isnull=True) | Q(lease_expires_at__lt=now))
        .update(
            active_run_uuid=run_uuid,
            lease_expires_at=now + timedelta(seconds=conf.RUN_LEASE_SECONDS),
            failed_run_seq=None,
            updated_at=now,
        )
    )
    if claimed and stale:
        _lease_expired(stale, now)
    return bool(claimed)


def _lease_expired(run_uuid: uuid.UUID, now: Any) -> None:
    # The run that held the lease died with its worker (or stalled past it): say so on its record.
    Run.objects.filter(uuid=run_uuid, status=Run.Status.IN_PROGRESS).update(
        status=Run.Status.FAILED,
        error="lease_expired",
        error_log="The worker running this run stopped before it finished; its lease expired.",
        finished_at=now,
    )


def _release(run: Run, *, failed_seq: int | None = None) -> None:
    Session.objects.filter(pk=run.session_id, active_run_uuid=run.uuid).update(
        active_run_uuid=None, lease_expires_at=None, failed_run_seq=failed_seq
    )


def run_start(
    *,
    session: Session,
    functions: Any = None,
    tools: Any = None,
    params: Mapping[str, Any] | None = None,
    stream: bool = False,
) -> RunContext:
    """Validate, claim the session, choose the history and build the model request.

    Raises ChatModelError (InvalidParams, SessionBusy, ContextTooLong, ...) before the
    model is called; a claimed run that fails here is recorded as failed.
    """
    version = session.version
    params = validate_run_params(params or {}, version)
    call_tools = normalise_tools(functions, tools)
    version_tools = normalise_tools(tools=version.tools) if version.tools else []
    merged_tools = list({t["function"]["name"]: t for t in [*version_tools, *call_tools]}.values())
    run_uuid = uuid.uuid4()
    if not _claim(session, run_uuid):
        raise SessionBusy(f"Session {session.uuid} is busy: another run is in progress. Try again when it ends.")
    sent_params = request_params(version, params)
    run = Run.objects.create(
        uuid=run_uuid,
        session=session,
        version=version,
        model=version.model,
        stream=stream,
        params=sent_params,
    )
    try:
        # The one context-window choice (context.py); a summary, when the strategy needs one, is written first.
        selection = context_select(session=session, version=version, tools=merged_tools, params=sent_params)
        if selection.summarise_upto is not None:
            summary_refresh(run=run, session=session, version=version, selection=selection)
    except Exception as exc:
        # A claimed run that cannot start is recorded as failed and frees its session at once.
        if isinstance(exc, ChatModelError):
            _fail_quietly(run, exc.code, str(exc))
        else:
            code = "database_error" if isinstance(exc, DatabaseError) else "internal_error"
            _fail_quietly(run, code, f"{type(exc).__name__}: {exc}")
        raise
    messages = [{"role": "system", "content": version.system_prompt}] if version.system_prompt else []
    if selection.summary:
        messages.append(summary_message(selection.summary))
    messages += [to_provider(m) for m in selection.messages]
    request: dict[str, Any] = {
        "model": version.model,
        "messages": messages,
        "timeout": conf.TIMEOUT,
        "num_retries": conf.NUM_RETRIES,
        **sent_params,
    }
    if merged_tools:
        request["tools"] = merged_tools
    if version.params.get("api_base"):
        request["api_base"] = version.params["api_base"]
    if version.fallbacks:
        request["fallbacks"] = list(version.fallbacks)
    if stream:
        request["stream_options"] = {"include_usage": True}
    Run.objects.filter(pk=run.pk).update(
        first_seq=selection.first_seq,
        last_seq=selection.last_seq,
        message_count=len(selection.messages),
        estimated_prompt_tokens=selection.prompt_tokens,
        used_summary=selection.used_summary,
    )
    run.estimated_prompt_tokens, run.used_summary = selection.prompt_tokens, selection.used_summary
    run.first_seq, run.last_seq, run.message_count = selection.first_seq, selection.last_seq, len(selection.messages)
    ctx = RunContext(run=run, session=session, version=version, request=request)
    ctx.emit(events.RUN_STARTED, stream=stream, model=version.model, version=version.number)
    return ctx


def _fail(run: Run, code: str, log: str, *, status: str = Run.Status.FAILED, partial: str = "", **fields: Any) -> None:
    """Record a failed run and free its session; the session's messages stay as they were."""
    Run.objects.filter(pk=run.pk).update(
        status=status,
        error=code[:40],
        error_log=log,
        partial_content=partial,
        finished_at=timezone.now(),
        **fields,
    )
    # Remember what the failed run was given, so the seed's retry (re-adding it) is recognised.
    _release(run, failed_seq=run.last_seq)


def _timings(ctx: RunContext) -> dict[str, int | None]:
    now = time.monotonic()
    ttft = None if ctx.first_token_at is None else int((ctx.first_token_at - ctx.started) * 1000)
    return {"latency_ms": int((now - ctx.started) * 1000), "time_to_first_token_ms": ttft}


def run_finish(ctx: RunContext, completion: Completion, *, cancelled: bool = False) -> LLMResponse:
    """Store the reply and the Run, release the session, send ``run_finished``."""
    run = ctx.run
    status = Run.Status.CANCELLED if cancelled else Run.Status.COMPLETED
    usage = completion.usage or {}
    tool_calls = completion.tool_calls
    function_call = completion.function_call
    if function_call and not tool_calls:
        # A legacy function_call is stored in the modern form too, so its result can name it.
        tool_calls = [{"id": f"call_{run.uuid.hex[:24]}", "type": "function", "function": function_call}]
    content = completion.content
    if cancelled and not (content or tool_calls):
        content = None
    stored: Message | None = None
    # Our own count, as for every stored message (the budget adds these up), made outside the transaction.
    reply_tokens = message_tokens(run.model, {"content": content, "tool_calls": tool_calls})
    try:
        with transaction.atomic():
            now = timezone.now()
            fields = dict(
                status=status,
                finish_reason=completion.finish_reason or "",
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                cost=completion.cost,
                model=(completion.answered_model or run.model)[:200],
                attempts=completion.attempts,
                finished_at=now,
                **_timings(ctx),
            )
            if content is not None or tool_calls:
                claimed = Session.objects.filter(pk=run.session_id, active_run_uuid=run.uuid).update(
                    next_seq=F("next_seq") + 1, active_run_uuid=None, lease_expires_at=None, updated_at=now
                )
                if not claimed:
                    raise SessionBusy("the run's lease expired before it finished; its reply was not stored")
                seq = Session.objects.filter(pk=run.session_id).values_list("next_seq", flat=True).get() - 1
                stored = Message.objects.create(
                    session_id=run.session_id,
                    seq=seq,
                    role=Message.Role.ASSISTANT,
                    content=content,
                    tool_calls=tool_calls,
                    function_call=function_call,
                    token_count=reply_tokens,
                    metadata={"cancelled": True} if cancelled else {},
                    run=run,
                )
            else:
                _release(run)
            Run.objects.filter(pk=run.pk).update(**fields)
            for key, value in fields.items():
                setattr(run, key, value)
    except (DatabaseError, SessionBusy) as exc:
        code = "lease_lost" if isinstance(exc, SessionBusy) else "database_error"
        log = f"The reply could not be stored: {exc}"
        logger.exception("chatmodel run %s: %s", run.uuid, log)
        _fail_quietly(run, code, log, partial=completion.content or "")
        ctx.emit(events.RUN_FAILED, status=Run.Status.FAILED, error=code, error_log=log)
        return _error_response(code, log, ctx=ctx)
    _local_cancels.discard(ctx.run_uuid)
    response = _response(ctx, completion, stored, tool_calls=tool_calls, status=status)
    ctx.emit(
        events.RUN_COMPLETED,
        status=status,
        message=message_json(stored) if stored else None,
        usage=completion.usage,
        cost=completion.cost,
        finish_reason=completion.finish_reason,
    )
    run_finished.send(sender=Run, run=run, response=response)
    return response


def _fail_quietly(run: Run, code: str, log: str, *, partial: str = "", status: str = Run.Status.FAILED) -> None:
    try:
        _fail(run, code, log, partial=partial, status=status)
    except DatabaseError:
        # The database is gone: the lease frees the session when it expires.
        logger.exception("chatmodel run %s: could not record the failure", run.uuid)


def run_fail(ctx: RunContext, error: LLMError, *, partial: str = "", incomplete: bool = False) -> LLMResponse:
    """Record a failed (or incomplete) run and return its error response."""
    status = Run.Status.INCOMPLETE if incomplete else Run.Status.FAILED
    _fail_quietly(ctx.run, error.code, error.message, partial=partial, status=status)
    with contextlib.suppress(DatabaseError):
        Run.objects.filter(pk=ctx.run.pk).update(**_timings(ctx))
    _local_cancels.discard(ctx.run_uuid)
    response = _error_response(error.code, error.message, ctx=ctx, status=status)
    ctx.emit(events.RUN_FAILED, status=status, error=error.code, error_log=error.message, partial_content=partial)
    ctx.run.status, ctx.run.error, ctx.run.error_log = status, error.code, error.message
    run_finished.send(sender=Run, run=ctx.run, response=response)
    return response


def _response(
    ctx: RunContext,
    completion: Completion,
    stored: Message | None,
    *,
    tool_calls: list[dict[str, Any]] | None,
    status: str,
    cls: type[LLMResponse] = LLMResponse,
    **extra: Any,
) -> LLMResponse:
    calls = [ToolCall.from_dict(c) for c in tool_calls] if tool_calls else None
    return cls(
        content=completion.content,
        function_call=calls[0].function if calls else None,
        tool_calls=calls,
        api_response=completion.api_response,
        usage=completion.usage,
        finish_reason=completion.finish_reason,
        status=status,
        model=completion.answered_model or ctx.run.model,
        cost=completion.cost,
        session_uuid=str(ctx.session.uuid),
        run_uuid=ctx.run_uuid,
        message_id=stored.pk if stored else None,
        message_seq=stored.seq if stored else None,
        version_uuid=str(ctx.version.uuid),
        version=ctx.version.number,
        **extra,
    )


def _error_response(
    code: str,
    log: str,
    *,
    ctx: RunContext | None = None,
    session: Session | None = None,
    status: str | None = Run.Status.FAILED,
    cls: type[LLMResponse] = LLMResponse,
    **extra: Any,
) -> LLMResponse:
    session = ctx.session if ctx else session
    return cls(
        content=None,
        error=True,
        error_code=code,
        error_log=log,
        status=status if ctx else None,
        session_uuid=str(session.uuid) if session else None,
        run_uuid=ctx.run_uuid if ctx else None,
        version_uuid=str(ctx.version.uuid) if ctx else None,
        version=ctx.version.number if ctx else None,
        model=ctx.run.model if ctx else None,
        **extra,
    )


def error_response(exc: BaseException, *, session: Session | None = None, stream: bool = False) -> LLMResponse:
    """The response of a run that failed before it began (bad input, busy, unknown chat model, database)."""
    if isinstance(exc, ChatModelError):
        code, log = exc.code, str(exc)
    elif isinstance(exc, DatabaseError):
        logger.exception("chatmodel run: database error")
        code, log = "database_error", f"The database failed: {exc}"
    else:
        logger.exception("chatmodel run: unexpected error")
        code, log = "internal_error", f"{type(exc).__name__}: {exc}"
    if not stream:
        return _error_response(code, log, session=session)
    event = events.RunEvents(str(session.uuid) if session else "", None).make(
        events.RUN_FAILED, status=None, error=code, error_log=log
    )
    return _error_response(code, log, session=session, cls=LLMStreamResponse, is_final=True, events=[event])


def run_cancel(*, session: Session) -> Run | None:
    """Ask the session's active run to stop; it keeps what was generated, marked cancelled."""
    active = Session.objects.filter(pk=session.pk).values_list("active_run_uuid", flat=True).first()
    if active is None:
        return None
    _local_cancels.add(str(active))
    Run.objects.filter(uuid=active, status=Run.Status.IN_PROGRESS).update(cancel_requested=True)
    return Run.objects.filter(uuid=active).first()


def _heartbeat(ctx: RunContext) -> bool:
    """Renew the lease; return True when the run was cancelled from anywhere."""
    ctx.last_heartbeat = time.monotonic()
    Session.objects.filter(pk=ctx.run.session_id, active_run_uuid=ctx.run.uuid).update(
        lease_expires_at=timezone.now() + timedelta(seconds=conf.RUN_LEASE_SECONDS)
    )
    return Run.objects.filter(pk=ctx.run.pk, cancel_requested=True).exists()


# --- the four ways to run ----------------------------------------------------------------------


def run(
    *,
    session: Session,
    functions: Any = None,
    tools: Any = None,
    params: Mapping[str, Any] | None = None,
) -> LLMResponse:
    """Run the model on the session and store its reply; never raises."""
    try:
        ctx = run_start(session=session, functions=functions, tools=tools, params=params)
    except Exception as exc:
        return error_response(exc, session=session)
    ctx.publish()
    try:
        completion = llm.complete(ctx.request)
    except Exception as exc:  # never let a run raise
        response = run_fail(ctx, llm.map_exception(exc))
    else:
        response = run_finish(ctx, completion, cancelled=ctx.run_uuid in _local_cancels)
    ctx.publish()
    return response


async def arun(
    *,
    session: Session,
    functions: Any = None,
    tools: Any = None,
    params: Mapping[str, Any] | None = None,
) -> LLMResponse:
    """``run`` with a native async model call; never raises."""
    try:
        ctx = await sync_to_async(run_start)(session=session, functions=functions, tools=tools, params=params)
    except Exception as exc:
        return error_response(exc, session=session)
    await ctx.apublish()
    try:
        completion = await llm.acomplete(ctx.request)
    except Exception as exc:
        response = await sync_to_async(run_fail)(ctx, llm.map_exception(exc))
    else:
        response = await sync_to_async(run_finish)(ctx, completion, cancelled=ctx.run_uuid in _local_cancels)
    await ctx.apublish()
    return response


class _StreamState:
    """What the sync and async stream loops share: chunk -> response and events, and the ending."""

    def __init__(self, ctx: RunContext, stream: Any) -> None:
        self.ctx = ctx
        self.assembler = llm.StreamAssembler(stream, ctx.request["model"])

    def chunk(self, raw: Any) -> LLMStreamResponse | None:
        text, tool_deltas = self.assembler.feed(raw)
        if not text and not tool_deltas:
            return None
        self.ctx.mark_first_token()
        if text:
            self.ctx.emit(events.TEXT_DELTA, delta=text)
        if tool_deltas:
            self.ctx.emit(events.TOOL_CALL_DELTA, deltas=tool_deltas)
        return LLMStreamResponse(
            content=text,
            tool_call_deltas=tool_deltas or None,
            api_response=raw,
            session_uuid=str(self.ctx.session.uuid),
            run_uuid=self.ctx.run_uuid,
            version_uuid=str(self.ctx.version.uuid),
            version=self.ctx.version.number,
            model=self.ctx.run.model,
            status=Run.Status.IN_PROGRESS,
        )

    def end(self, *, cancelled: bool = False, error: LLMError | None = None) -> LLMStreamResponse:
        """Store the outcome; the final chunk carries it."""
        if error is not None:
            incomplete = error.code in ("stream_cut", "malformed_response") and bool(self.assembler.chunks)
            return final_chunk(run_fail(self.ctx, error, partial=self.assembler.partial_text, incomplete=incomplete))
        completion = self.assembler.finish()
        if not completion.complete and not cancelled:
            log = (
                "The model's stream ended before the model finished (no finish_reason from the provider); "
                f"the {len(self.assembler.partial_text)} characters received are kept on the run, not stored as a "
                "reply."
            )
            return final_chunk(
                run_fail(self.ctx, LLMError("stream_cut", log), partial=self.assembler.partial_text, incomplete=True)
            )
        if cancelled:
            completion.content = self.assembler.partial_text or completion.content
        return final_chunk(run_finish(self.ctx, completion, cancelled=cancelled))


def final_chunk(response: LLMResponse) -> LLMStreamResponse:
    """The last chunk of a stream: empty ``content``, and the whole response's fields."""
    data = {k: getattr(response, k) for k in LLMResponse.__dataclass_fields__}
    data["content"] = ""
    return LLMStreamResponse(**data, is_final=True)


def _with_events(chunk: LLMStreamResponse, published: list[dict[str, Any]]) -> LLMStreamResponse:
    chunk.events = published
    return chunk


def run_stream(
    *,
    session: Session,
    functions: Any = None,
    tools: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[LLMStreamResponse]:
    """Run the model on the session, yielding text deltas, then a final chunk; never raises.

    Nothing happens until the first ``next()``. Closing the iterator early cancels the
    run and keeps what was generated. Each chunk's ``events`` are the wire events it
    published (see ``events.py``).
    """
    try:
        ctx = run_start(session=session, functions=functions, tools=tools, params=params, stream=True)
    except Exception as exc:
        yield error_response(exc, session=session, stream=True)
        return
    started = ctx.publish()
    try:
        stream = llm.open_stream(ctx.request)
    except Exception as exc:
        final = final_chunk(run_fail(ctx, llm.map_exception(exc)))
        yield _with_events(final, started + ctx.publish())
        return
    state = _StreamState(ctx, stream)
    finished = False
    pending = started
    try:
        cancelled = False
        try:
            for raw in stream:
                response = state.chunk(raw)
                if response is not None:
                    yield _with_events(response, pending + ctx.publish())
                    pending = []
                if ctx.cancelled_locally() or (ctx.heartbeat_due() and _heartbeat(ctx)):
                    cancelled = True
                    _close(stream)
                    break
        except GeneratorExit:
            raise
        except Exception as exc:
            finished = True
            final = state.end(error=llm.map_exception(exc))
            yield _with_events(final, pending + ctx.publish())
            return
        finished = True
        final = state.end(cancelled=cancelled)
        yield _with_events(final, pending + ctx.publish())
    finally:
        if not finished:
            # The caller stopped reading: stop the model and keep what it said, as cancelled.
            _close(stream)
            try:
                state.end(cancelled=True)
                ctx.publish()
            except Exception:
                logger.exception("chatmodel run %s: could not store the abandoned stream", ctx.run_uuid)


async def arun_stream(
    *,
    session: Session,
    functions: Any = None,
    tools: Any = None,
    params: Mapping[str, Any] | None = None,
) -> AsyncIterator[LLMStreamResponse]:
    """``run_stream`` with a native async model stream; never raises."""
    try:
        ctx = await sync_to_async(run_start)(
            session=session, functions=functions, tools=tools, params=params, stream=True
        )
    except Exception as exc:
        yield error_response(exc, session=session, stream=True)
        return
    started = await ctx.apublish()
    try:
        stream = await llm.aopen_stream(ctx.request)
    except Exception as exc:
        final = final_chunk(await sync_to_async(run_fail)(ctx, llm.map_exception(exc)))
        yield _with_events(final, started + await ctx.apublish())
        return
    state = _StreamState(ctx, stream)
    finished = False
    pending = started
    try:
        cancelled = False
        try:
            async for raw in stream:
                response = state.chunk(raw)
                if response is not None:
                    yield _with_events(response, pending + await ctx.apublish())
                    pending = []
                if ctx.cancelled_locally() or (ctx.heartbeat_due() and await sync_to_async(_heartbeat)(ctx)):
                    cancelled = True
                    await _aclose(stream)
                    break
        except GeneratorExit:
            raise
        except Exception as exc:
            finished = True
            final = await sync_to_async(state.end)(error=llm.map_exception(exc))
            yield _with_events(final, pending + await ctx.apublish())
            return
        finished = True
        final = await sync_to_async(state.end)(cancelled=cancelled)
        yield _with_events(final, pending + await ctx.apublish())
    finally:
        if not finished:
            await _aclose(stream)
            try:
                await sync_to_async(state.end)(cancelled=True)
                await ctx.apublish()
            except Exception:
                logger.exception("chatmodel run %s: could not store the abandoned stream", ctx.run_uuid)


def _close(stream: Any) -> None:
    for target in (getattr(stream, "completion_stream", None), stream):
        close = getattr(target, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
            return


async def _aclose(stream: Any) -> None:
    for target in (getattr(stream, "completion_stream", None), stream):
        aclose = getattr(target, "aclose", None)
        if callable(aclose):
            with contextlib.suppress(Exception):
                await aclose()
            return


# --- versions -----------------------------------------------------------------------------------


def version_create(
    *,
    chat_model: ChatModel,
    system_prompt: str = "",
    model: str,
    params: Mapping[str, Any] | None = None,
    tools: Any = None,
    memo: str = "",
    tags: list[str] | None = None,
    created_by: Any = None,
) -> Version:
    """Add the next-numbered version to a chat model (a draft: not published)."""
    tools = normalise_tools(tools=tools) if tools else []
    for _attempt in range(5):
        number = (
            Version.objects.filter(chat_model=chat_model).order_by("-number").values_list("number", flat=True).first()
            or 0
        ) + 1
        try:
            with transaction.atomic():
                return Version.objects.create(
                    chat_model=chat_model,
                    number=number,
                    system_prompt=system_prompt,
                    model=model,
                    params=dict(params or {}),
                    tools=tools,
                    memo=memo,
                    tags=list(tags or []),
                    created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
                )
        except IntegrityError:
            continue  # another process took that number
    raise ChatModelError("Could not number the new version: too many concurrent creations.")


# --- REST API (chatmodel_app.api) -----------------------------------------------------------------


def chat_model_list() -> list[ChatModel]:
    """Every chat model, each with its versions prefetched (newest first)."""
    return list(ChatModel.objects.prefetch_related("versions").order_by("name"))


def session_list(*, user: Any, chat_model: ChatModel | None = None) -> Any:
    """The sessions ``user`` created (none for an anonymous user), newest first, as a queryset."""
    if not getattr(user, "is_authenticated", False):
        return Session.objects.none()
    sessions = Session.objects.select_related("chat_model", "version").filter(user=user)
    if chat_model is not None:
        sessions = sessions.filter(chat_model=chat_model)
    return sessions.order_by("-created_at", "-pk")


def session_open(
    *,
    chat_model: ChatModel,
    user: Any,
    version: VersionSpec = "deploy",
    metadata: Mapping[str, Any] | None = None,
    session_uuid: Any = None,
) -> tuple[Session, bool]:
    """Create a session; with ``session_uuid`` already taken, return ``(that session, False)`` instead.

    The caller decides whether the existing session is one the user may use.
    """
    if session_uuid is not None:
        existing = Session.objects.select_related("chat_model", "version").filter(uuid=session_uuid).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            session = session_create(
                chat_model=chat_model, version=version, user=user, metadata=metadata, session_uuid=session_uuid
            )
    except IntegrityError:
        if session_uuid is None:
            raise
        # Another request created that uuid first.
        return Session.objects.select_related("chat_model", "version").get(uuid=session_uuid), False
    return session, True


def message_page(
    *,
    session: Session,
    after: int | None = None,
    before: int | None = None,
    limit: int = 50,
    order: str = "asc",
) -> tuple[list[Message], bool]:
    """A page of the session's messages by ``seq``, strictly between ``after`` and ``before``; and if more follow."""
    messages = Message.objects.filter(session=session).select_related("run")
    if after is not None:
        messages = messages.filter(seq__gt=after)
    if before is not None:
        messages = messages.filter(seq__lt=before)
    rows = list(messages.order_by("-seq" if order == "desc" else "seq")[: limit + 1])
    return rows[:limit], len(rows) > limit


# --- versions & publishing ----------------------------------------------------------------------
# The admin and the export/import commands only translate; the rules live here: a version that has
# served a session never changes (editing makes a new one), every publish and unpublish is recorded,
# and A/B ratios are checked before anything is written.

# The fields that make up what a version says and does (everything but its identity and publication).
VERSION_FIELDS = (
    "system_prompt",
    "model",
    "params",
    "tools",
    "memo",
    "tags",
    "truncation",
    "truncation_last_messages",
    "context_window",
    "summary_model",
    "fallbacks",
)
_TRUNCATIONS = ("auto", "last_messages", "summary")
# Provider keys come from the server's environment, never from the database (DESIGN.md).
_SECRET_PARAMS = frozenset(
    {
        "api_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "azure_ad_token",
        "vertex_credentials",
    }
)
EXPORT_FORMAT = "chatmodel_app.chat_models/1"


def version_in_use(*, version: Version) -> bool:
    """Whether the version has served a session, and so can no longer change."""
    return Session.objects.filter(version_id=version.pk).exists()


def _in_use_error(version: Version) -> ChatModelError:
    return ChatModelError(
        f"{version} has served sessions, so it is read-only: those sessions must keep the prompt they were "
        "given. Save your change as a new version instead.",
        code="version_in_use",
    )


def version_params_validate(params: Any) -> dict[str, Any]:
    """Check a version's params: a JSON object, sampling values in range, and no API keys."""
    if not isinstance(params, Mapping):
        raise InvalidParams('params must be a JSON object, e.g. {"temperature": 0.7, "max_tokens": 512}.')
    secrets = sorted(k for k in params if k in _SECRET_PARAMS or str(k).endswith(("_key", "_secret")))
    if secrets:
        raise InvalidParams(
            f"params must not hold provider keys ({', '.join(secrets)}): keys come from the server's environment, "
            "never from the database."
        )
    # The caller-facing check knows the ranges; a blank version puts no ceiling on max_tokens.
    validate_run_params({k: v for k, v in params.items() if k in conf.ALLOWED_PARAMS}, Version(params={}))
    return dict(params)


def _positive_int_or_none(name: str, value: Any) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParams(f"{name} must be a positive whole number or empty; got {value!r}.")
    return value


def _string_list(name: str, value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(f"{name} must be a list of strings; got {value!r}.")
    return [v.strip() for v in value if v.strip()]


def version_field_clean(name: str, value: Any) -> Any:
    """Validate one version field; return its clean value or raise InvalidParams with a readable message."""
    if name in ("system_prompt", "memo", "summary_model"):
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidParams(f"{name} must be text; got {type(value).__name__}.")
        return value.strip() if name == "summary_model" else value
    if name == "model":
        if not isinstance(value, str) or not value.strip():
            raise InvalidParams("model is required: a LiteLLM model string such as 'gpt-4o-mini' or 'offline/demo'.")
        if len(value.strip()) > 200:
            raise InvalidParams("model must be at most 200 characters.")
        return value.strip()
    if name == "params":
        return version_params_validate({} if value is None else value)
    if name == "tools":
        if value in (None, ""):
            return []
        # One schema pasted on its own is as good as a list of one.
        return normalise_tools(tools=[value] if isinstance(value, Mapping) else value)
    if name in ("tags", "fallbacks"):
        return _string_list(name, value)
    if name == "truncation":
        if value not in _TRUNCATIONS:
            raise InvalidParams(f"truncation must be one of {', '.join(_TRUNCATIONS)}; got {value!r}.")
        return value
    if name in ("truncation_last_messages", "context_window"):
        return _positive_int_or_none(name, value)
    raise InvalidParams(f"{name} is not a version field (fields: {', '.join(VERSION_FIELDS)}).")


def version_fields_clean(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the given version fields (any subset of VERSION_FIELDS); return clean copies."""
    clean = {name: version_field_clean(name, value) for name, value in fields.items()}
    if clean.get("truncation") == "last_messages" and "truncation_last_messages" in clean:
        _check_truncation(clean["truncation"], clean["truncation_last_messages"])
    return clean


def _check_truncation(truncation: str, last_messages: int | None) -> None:
    if truncation == "last_messages" and not last_messages:
        raise InvalidParams("truncation 'last_messages' needs truncation_last_messages: how many messages to keep.")


def version_draft_create(*, chat_model: ChatModel, created_by: Any = None, **fields: Any) -> Version:
    """Add a new unpublished version with any of VERSION_FIELDS (``model`` is required)."""
    clean = version_fields_clean(fields)
    if "model" not in clean:
        raise InvalidParams("model is required: a LiteLLM model string such as 'gpt-4o-mini' or 'offline/demo'.")
    _check_truncation(clean.get("truncation", "auto"), clean.get("truncation_last_messages"))
    core = ("system_prompt", "model", "params", "tools", "memo", "tags")
    with transaction.atomic():
        version = version_create(
            chat_model=chat_model, created_by=created_by, **{k: clean[k] for k in core if k in clean}
        )
        extra = {k: v for k, v in clean.items() if k not in core}
        if extra:
            Version.objects.filter(pk=version.pk).update(**extra)
            for key, value in extra.items():
                setattr(version, key, value)
    return version


def version_update(*, version: Version, **fields: Any) -> Version:
    """Change a draft in place; raises ChatModelError (code ``version_in_use``) once it has served a session."""
    clean = version_fields_clean(fields)
    with transaction.atomic():
        # The row lock makes a session that pins this version wait for (or be seen by) the check.
        locked = Version.objects.select_for_update().select_related("chat_model").get(pk=version.pk)
        if version_in_use(version=locked):
            raise _in_use_error(locked)
        for key, value in clean.items():
            setattr(locked, key, value)
        _check_truncation(locked.truncation, locked.truncation_last_messages)
        if clean:
            locked.save(update_fields=list(clean))
    return locked


def version_copy(*, version: Version, created_by: Any = None, **overrides: Any) -> Version:
    """Save any version (in use or not) as a new draft, with ``overrides`` applied to the copy."""
    fields = {name: copy.deepcopy(getattr(version, name)) for name in VERSION_FIELDS}
    fields["memo"] = f"Copy of v{version.number}" + (f": {version.memo}" if version.memo else ".")
    fields.update(overrides)
    return version_draft_create(chat_model=version.chat_model, created_by=created_by, **fields)


def _ratios_clean(ratios: Mapping[Any, Any]) -> dict[int, float]:
    if not ratios:
        raise InvalidParams("Choose at least one version to publish.")
    clean: dict[int, float] = {}
    for number, ratio in ratios.items():
        try:
            n = int(number)
        except (TypeError, ValueError):
            raise InvalidParams(f"{number!r} is not a version number.") from None
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio) or ratio <= 0:
            raise InvalidParams(
                f"The A/B ratio of v{n} must be a positive number; got {ratio!r}. "
                "To stop serving a version, unpublish it."
            )
        clean[n] = float(ratio)
    return clean


def _actor(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None


def versions_publish(*, chat_model: ChatModel, ratios: Mapping[int, float], user: Any = None) -> list[PublishRecord]:
    """Make exactly these versions (number -> A/B ratio) the published ones; record every change.

    Versions of the chat model that are published but not named are unpublished. Ratios are
    weights: {2: 0.8, 3: 0.2} and {2: 80, 3: 20} serve v2 four times as often as v3.
    """
    clean = _ratios_clean(ratios)
    actor = _actor(user)
    with transaction.atomic():
        # Serialise publishes of one chat model, so two editors never both leave their choice live.
        list(ChatModel.objects.select_for_update().filter(pk=chat_model.pk).values_list("pk", flat=True))
        chosen = {v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=clean)}
        missing = sorted(set(clean) - set(chosen))
        if missing:
            raise InvalidParams(f"{chat_model.name} has no version {', '.join(f'v{n}' for n in missing)}.")
        records = []
        others = list(Version.objects.filter(chat_model=chat_model, is_published=True).exclude(number__in=clean))
        if others:
            Version.objects.filter(pk__in=[v.pk for v in others]).update(is_published=False)
            records += [PublishRecord(version=v, action=PublishRecord.Action.UNPUBLISH, user=actor) for v in others]
        for number, ratio in sorted(clean.items()):
            version = chosen[number]
            if version.is_published and version.ratio == ratio:
                continue
            Version.objects.filter(pk=version.pk).update(is_published=True, ratio=ratio)
            records.append(PublishRecord(version=version, action=PublishRecord.Action.PUBLISH, ratio=ratio, user=actor))
        PublishRecord.objects.bulk_create(records)
    return records


def version_publish(*, version: Version, user: Any = None) -> list[PublishRecord]:
    """Publish this version alone (ratio 1), unpublishing the chat model's others."""
    return versions_publish(chat_model=version.chat_model, ratios={version.number: 1.0}, user=user)


def version_unpublish(*, version: Version, user: Any = None) -> PublishRecord | None:
    """Stop serving this version; None when it was not published."""
    with transaction.atomic():
        list(ChatModel.objects.select_for_update().filter(pk=version.chat_model_id).values_list("pk", flat=True))
        if not Version.objects.filter(pk=version.pk, is_published=True).update(is_published=False):
            return None
        return PublishRecord.objects.create(version=version, action=PublishRecord.Action.UNPUBLISH, user=_actor(user))


def chat_models_export(*, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Chat models (all, or those named) with every version, as plain data for YAML or JSON."""
    chat_models = ChatModel.objects.order_by("name").prefetch_related(
        Prefetch("versions", queryset=Version.objects.select_related("created_by").order_by("number"))
    )
    if names:
        chat_models = chat_models.filter(name__in=names)
        missing = sorted(set(names) - {c.name for c in chat_models})
        if missing:
            raise ChatModelNotFound(f"No chat model is named {', '.join(map(repr, missing))}.")
    return {
        "format": EXPORT_FORMAT,
        "chat_models": [
            {
                "name": chat_model.name,
                "description": chat_model.description,
                "versions": [_version_export(v) for v in chat_model.versions.all()],
            }
            for chat_model in chat_models
        ],
    }


def _version_export(version: Version) -> dict[str, Any]:
    data: dict[str, Any] = {"number": version.number, "uuid": str(version.uuid)}
    data.update({name: getattr(version, name) for name in VERSION_FIELDS})
    data.update(
        is_published=version.is_published,
        ratio=version.ratio,
        created_by=version.created_by.get_username() if version.created_by else None,
        created_at=version.created_at.isoformat() if version.created_at else None,
    )
    return data


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do), one ``"name vN"`` label a line."""

    chat_models_created: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.chat_models_created or self.created or self.updated or self.published)


class _DryRun(Exception):
    """Rolls back a dry-run import."""


_IMPORT_VERSION_KEYS = frozenset(
    {*VERSION_FIELDS, "number", "uuid", "is_published", "ratio", "created_by", "created_at"}
)


def chat_models_import(*, data: Any, user: Any = None, publish: bool = True, dry_run: bool = False) -> ImportReport:
    """Create or update chat models and versions from ``chat_models_export`` data, all or nothing.

    Idempotent: importing the same data twice changes nothing the second time. A version is
    matched by chat model and number; one that has served sessions is never changed (the
    import fails, naming it). With ``publish``, each chat model's published versions and
    ratios become those of the data (a chat model with none published there is left as it is).
    """
    entries = _import_entries(data)
    report = ImportReport()
    try:
        with transaction.atomic():
            users: dict[str, Any] = {}
            for entry in entries:
                _import_chat_model(entry, report, user=user, publish=publish, users=users)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


def _import_entries(data: Any) -> list[dict[str, Any]]:
    """Check the shape of import data, naming the place of the first problem."""
    if not isinstance(data, Mapping) or not isinstance(data.get("chat_models"), list):
        raise InvalidParams("The file must be an object with a 'chat_models' list (what chatmodel_export writes).")
    fmt = data.get("format", EXPORT_FORMAT)
    if fmt != EXPORT_FORMAT:
        raise InvalidParams(f"Unknown format {fmt!r}; this version of chatmodel_app reads {EXPORT_FORMAT!r}.")
    entries = []
    seen_names: set[str] = set()
    for i, raw in enumerate(data["chat_models"]):
        where = f"chat_models[{i}]"
        if not isinstance(raw, Mapping):
            raise InvalidParams(f"{where} must be an object with 'name' and 'versions'.")
        unknown = set(raw) - {"name", "description", "versions"}
        if unknown:
            raise InvalidParams(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}.")
        name = raw.get("name")
        if not isinstance(name, str) or not _SLUG.match(name) or len(name) > 100:
            raise InvalidParams(f"{where}.name must be a slug (letters, digits, '_' or '-'); got {name!r}.")
        if name in seen_names:
            raise InvalidParams(f"{where}: chat model {name!r} appears twice.")
        seen_names.add(name)
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidParams(f"{where}.description must be text.")
        versions = raw.get("versions", [])
        if not isinstance(versions, list):
            raise InvalidParams(f"{where}.versions must be a list.")
        clean_versions = []
        numbers: set[int] = set()
        for j, item in enumerate(versions):
            clean_versions.append(_import_version(item, f"{where}.versions[{j}] ({name})", numbers))
        entries.append({"name": name, "description": description, "versions": clean_versions})
    return entries


_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")


def _import_version(item: Any, where: str, numbers: set[int]) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise InvalidParams(f"{where} must be an object.")
    unknown = set(item) - _IMPORT_VERSION_KEYS
    if unknown:
        raise InvalidParams(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}.")
    number = item.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidParams(f"{where}.number must be a positive whole number; got {number!r}.")
    if number in numbers:
        raise InvalidParams(f"{where}: version number {number} appears twice.")
    numbers.add(number)
    try:
        fields = version_fields_clean({k: item[k] for k in VERSION_FIELDS if k in item})
    except InvalidParams as exc:
        raise InvalidParams(f"{where}: {exc}") from None
    if "model" not in fields:
        raise InvalidParams(f"{where}.model is required.")
    _check_truncation(fields.get("truncation", "auto"), fields.get("truncation_last_messages"))
    version_uuid = None
    if item.get("uuid") is not None:
        try:
            version_uuid = uuid.UUID(str(item["uuid"]))
        except ValueError:
            raise InvalidParams(f"{where}.uuid is not a uuid: {item['uuid']!r}.") from None
    published = item.get("is_published", False)
    if not isinstance(published, bool):
        raise InvalidParams(f"{where}.is_published must be true or false.")
    ratio = item.get("ratio", 1.0)
    if published:
        ratio = _ratios_clean({number: ratio})[number]
    created_by = item.get("created_by")
    if created_by is not None and not isinstance(created_by, str):
        raise InvalidParams(f"{where}.created_by must be a username or null.")
    return {
        "number": number,
        "uuid": version_uuid,
        "fields": fields,
        "is_published": published,
        "ratio": ratio,
        "created_by": created_by,
    }


def _import_user(username: str | None, users: dict[str, Any]) -> Any:
    if not username:
        return None
    if username not in users:
        from django.contrib.auth import get_user_model

        model = get_user_model()
        users[username] = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    return users[username]


def _import_chat_model(
    entry: dict[str, Any], report: ImportReport, *, user: Any, publish: bool, users: dict[str, Any]
) -> None:
    name = entry["name"]
    chat_model, created = ChatModel.objects.get_or_create(
        name=name, defaults={"description": entry["description"] or ""}
    )
    if created:
        report.chat_models_created.append(name)
    elif entry["description"] is not None and entry["description"] != chat_model.description:
        chat_model.description = entry["description"]
        chat_model.save(update_fields=["description", "updated_at"])
    numbers = [v["number"] for v in entry["versions"]]
    existing = {v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=numbers)}
    for item in sorted(entry["versions"], key=lambda v: v["number"]):
        label = f"{name} v{item['number']}"
        current = existing.get(item["number"])
        fields = item["fields"]
        if current is None:
            version_uuid = item["uuid"] or uuid.uuid4()
            other = Version.objects.filter(uuid=version_uuid).select_related("chat_model").first()
            if other is not None:
                raise InvalidParams(f"{label}: its uuid {version_uuid} already belongs to {other} here.")
            try:
                with transaction.atomic():
                    Version.objects.create(
                        chat_model=chat_model,
                        number=item["number"],
                        uuid=version_uuid,
                        created_by=_import_user(item["created_by"], users),
                        **fields,
                    )
            except IntegrityError:
                raise ChatModelError(f"{label} was created by someone else during the import; run it again.") from None
            report.created.append(label)
            continue
        changed = sorted(k for k, v in fields.items() if getattr(current, k) != v)
        if not changed:
            report.unchanged.append(label)
            continue
        if version_in_use(version=current):
            raise ChatModelError(
                f"{label} has served sessions, so the import will not change it (it differs in: "
                f"{', '.join(changed)}). Give the change a new version number.",
                code="version_in_use",
            )
        version_update(version=current, **{k: fields[k] for k in changed})
        report.updated.append(label)
    wanted = {v["number"]: v["ratio"] for v in entry["versions"] if v["is_published"]}
    if publish and wanted:
        live = dict(Version.objects.filter(chat_model=chat_model, is_published=True).values_list("number", "ratio"))
        if live != wanted:
            versions_publish(chat_model=chat_model, ratios=wanted, user=user)
            report.published.append(f"{name}: " + ", ".join(f"v{n} ({r:g})" for n, r in sorted(wanted.items())))


# --- summaries (truncation "summary") ----------------------------------------------------------

# At most this many summary calls in one run: a session that meets its window with a long history
# nobody summarised yet (the strategy was switched on late) gets the newest part condensed, not all.
_SUMMARY_MAX_CHUNKS = 4


def summary_refresh(*, run: Run, session: Session, version: Version, selection: Selection) -> Selection:
    """Fold the messages that fell out of the window into the session's summary, and send it with the rest.

    Called by ``run_start`` under the run's claim (for ``arun``, in its worker thread). The summary
    model reads the summary so far and the newly dropped messages, one chunk that fits its window per
    call. A failed call never fails the run: the run sends what plain truncation picks, with the
    summary as it was, and says so in the Run's ``error_log``.
    """
    model = context.summary_model(version)
    after = selection.summary_until_seq or 0
    upto = selection.summarise_upto or after
    text, done = selection.summary, after
    try:
        chunk_tokens = context.summary_chunk_budget(version, model)
        if chunk_tokens < 64:
            raise LLMError(
                "summary_window",
                f"the summary model {model!r} has no room for a transcript: lower CHATMODEL_SUMMARY_MAX_TOKENS",
            )
        dropped, skipped = context.history_range(
            session=session,
            model=version.model,
            after_seq=after,
            upto_seq=upto,
            max_tokens=chunk_tokens * _SUMMARY_MAX_CHUNKS,
            message_cap=chunk_tokens,
        )
        chunks, left_out = context.summary_chunks(dropped, chunk_tokens, _SUMMARY_MAX_CHUNKS)
        if skipped or left_out:
            logger.info(
                "chatmodel run %s: messages %s-%s are more than %s summary calls back; the summary skips them",
                run.uuid,
                after + 1,
                chunks[0][0]["seq"] - 1,
                _SUMMARY_MAX_CHUNKS,
            )
        for chunk in chunks:
            _summary_lease_renew(run)
            text = _summary_call(version, model, text, chunk, chunk_tokens)
            done = chunk[-1]["seq"]
        done = upto
    except Exception as exc:
        error = exc if isinstance(exc, LLMError) else llm.map_exception(exc)
        log = (
            f"summary_failed: messages {after + 1}-{upto} could not be summarised ({error.code}: {error.message}). "
            "This run used plain truncation; the next run tries again."
        )
        logger.warning("chatmodel run %s: %s", run.uuid, log)
        with contextlib.suppress(DatabaseError):
            Run.objects.filter(pk=run.pk).update(error_log=log)
            if done > after:
                _summary_store(run, session, text, done)  # keep what was condensed before the failure
        run.error_log = log
        selection.set_summary(text, context.summary_tokens(version.model, text))
        return selection
    _summary_store(run, session, text, done)
    selection.drop_oldest(len(selection.units) - selection.keep)
    selection.set_summary(text, context.summary_tokens(version.model, text))
    return selection


def _summary_call(version: Version, model: str, previous: str, chunk: list[Any], chunk_tokens: int) -> str:
    """One call of the summary model: the summary so far plus ``chunk`` -> the new summary."""
    request: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": conf.SUMMARY_PROMPT},
            {"role": "user", "content": context.summary_input(previous, chunk, chunk_tokens)},
        ],
        "max_tokens": conf.SUMMARY_MAX_TOKENS,
        "timeout": conf.TIMEOUT,
        "num_retries": conf.NUM_RETRIES,
    }
    # The version's api_base serves its own model; another summary model uses LiteLLM's default for it.
    if model == version.model and version.params.get("api_base"):
        request["api_base"] = version.params["api_base"]
    completion = llm.complete(request)
    text = (completion.content or "").strip()
    if not text:
        raise LLMError("empty_summary", "the summary model answered with no text")
    logger.info("chatmodel summary by %s: %s", model, completion.usage)
    return context.summary_clip(version.model, text)


def _summary_lease_renew(run: Run) -> None:
    # Several summary calls may outlast the lease the claim took.
    Session.objects.filter(pk=run.session_id, active_run_uuid=run.uuid).update(
        lease_expires_at=timezone.now() + timedelta(seconds=conf.RUN_LEASE_SECONDS)
    )


def _summary_store(run: Run, session: Session, text: str, until_seq: int) -> None:
    Session.objects.filter(pk=session.pk, active_run_uuid=run.uuid).update(
        summary=text, summary_until_seq=until_seq, updated_at=timezone.now()
    )
    session.summary, session.summary_until_seq = text, until_seq
