"""The one pipeline every front door uses: sessions, add_messages, and runs (sync, async, streamed).

A run: validate the request -> claim the session (a conditional UPDATE with a lease,
so one run per session holds across processes) -> pick the history that fits
(``context.select_history``) -> call the model (``llm``) -> store the assistant
message and the Run, release the claim, in one transaction. Sync and async share
every step but the model call; the async call is ``litellm.acompletion``.
Runs never raise: every failure becomes an ``LLMResponse`` with ``error=True``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from . import events, llm
from .conf import conf
from .context import input_budget, message_tokens, request_params, select_history
from .exceptions import ChatModelError, InvalidParams, SessionBusy
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
from .models import ChatModel, Message, Run, Session, Version
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
) -> list[Message]:
    """Append messages to the session in one transaction; raises InvalidMessages or SessionBusy.

    While a run is active the session is busy: messages are refused, never slipped in
    before the reply. Repeating exactly the messages that a failed run was given (the
    seed's retry loop) stores nothing new and returns the stored ones.
    """
    clean = validate_messages(
        messages,
        allowed_roles=allowed_roles,
        max_messages=conf.MAX_MESSAGES_PER_REQUEST,
        max_chars=conf.MAX_MESSAGE_CHARS,
    )
    model = session.version.model
    for message in clean:
        message["token_count"] = message_tokens(model, message)
    n = len(clean)
    try:
        with transaction.atomic():
            first_seq, failed_run_seq = _allocate(session, n)
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
    updated = (
        Session.objects.filter(pk=session.pk)
        .filter(Q(active_run_uuid__isnull=True) | Q(lease_expires_at__lt=now))
        .update(next_seq=F("next_seq") + n, updated_at=now)
    )
    if not updated:
        if not Session.objects.filter(pk=session.pk).exists():
            raise ChatModelError(f"Session {session.uuid} was deleted.", code="session_not_found")
        raise SessionBusy(
            f"Session {session.uuid} is busy: a run is in progress. Wait for its reply (or cancel it) before adding "
            "messages."
        )
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
        # The run that held the lease died with its worker: say so on its record.
        Run.objects.filter(uuid=stale, status=Run.Status.IN_PROGRESS).update(
            status=Run.Status.FAILED,
            error="lease_expired",
            error_log="The worker running this run stopped before it finished; its lease expired.",
            finished_at=now,
        )
    return bool(claimed)


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
        system_tokens = llm.count_tokens(version.model, text=version.system_prompt) if version.system_prompt else 0
        tools_tokens = llm.count_tokens(version.model, tools=merged_tools) if merged_tools else 0
        budget = input_budget(
            version,
            system_tokens=system_tokens,
            tools_tokens=tools_tokens,
            max_tokens=sent_params.get("max_tokens"),
        )
        selection = select_history(session=session, version=version, budget=budget)
    except ChatModelError as exc:
        _fail(run, exc.code, str(exc))
        raise
    messages = [{"role": "system", "content": version.system_prompt}] if version.system_prompt else []
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
        estimated_prompt_tokens=selection.tokens + system_tokens + tools_tokens,
    )
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
                    token_count=usage.get("completion_tokens") or message_tokens(run.model, {"content": content}),
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
