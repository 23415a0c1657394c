"""A run: claim the session, choose the history, call the model, store the reply and the Run.

Runs never raise: every failure becomes an ``LLMResponse`` with ``error=True``. ``run`` and
``arun`` are the non-streamed drivers; the streamed ones are in ``streaming.py``. Both share
``run_start``, ``run_finish`` and ``run_fail``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Generator, Mapping
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from .. import events, llm
from ..conf import conf
from ..context import context_select, message_tokens, paths, request_params, summary_message
from ..context.prompt import system_prompt_for
from ..exceptions import ChatModelError, InvalidMessages, SessionBusy
from ..llm import Completion, LLMError
from ..llm.messages import to_provider
from ..models import Message, Run, Session, Version
from ..selectors import message_json
from ..signals import run_finished
from ..types import LLMResponse, LLMStreamResponse, ToolCall
from ..validation import params_redacted, validate_run_params, validate_tools
from . import leases, live
from .run_context import RunContext
from .steps import Cmd, Driver, aperform, call, emit, perform
from .summaries import summary_refresh

logger = logging.getLogger("chatmodel_app")


def _merged_tools(version: Version, functions: Any, tools: Any) -> list[dict[str, Any]]:
    """The version's tools, then the call's (a call's tool replaces the version's of the same name)."""
    call_tools = validate_tools(functions=functions, tools=tools)
    version_tools = validate_tools(tools=version.tools) if version.tools else []
    return list({t["function"]["name"]: t for t in [*version_tools, *call_tools]}.values())


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
    merged_tools = _merged_tools(version, functions, tools)
    # A session that never had a message gets no model call (the model would answer its system prompt alone).
    # The row in hand may be older than the last add_messages: only the database can say it is empty.
    if session.next_seq <= 1 and not Message.objects.filter(session_id=session.pk).exists():
        raise InvalidMessages(
            f"Session {session.uuid} has no messages: add one (add_messages) before run().", code="no_messages"
        )
    sent_params = request_params(version, params)
    run = Run(
        uuid=uuid.uuid4(),
        session=session,
        version=version,
        model=version.model,
        stream=stream,
        # Stored and shown (admin, API): a credential a legacy version still carries is sent, never kept.
        params=params_redacted(sent_params),
        worker_channel=live.worker_channel(),
    )
    if not leases.take(session_id=session.pk, run_uuid=run.uuid):
        raise SessionBusy(f"Session {session.uuid} is busy: another run is in progress. Try again when it ends.")
    try:
        # The current path (services/branches.py), read once the session is ours: no switch can change it now.
        paths.state(session, fresh=True)
        # The one context-window choice (context.py); a summary, when the strategy needs one, is written first.
        selection = context_select(session=session, version=version, tools=merged_tools, params=sent_params)
        if selection.summarise_upto is not None:
            summary_refresh(run=run, session=session, version=version, selection=selection)
        run.first_seq, run.last_seq = selection.first_seq, selection.last_seq
        run.message_count = len(selection.messages)
        run.estimated_prompt_tokens, run.used_summary = selection.prompt_tokens, selection.used_summary
        # The Run row is written once, with its history, after the claim.
        run.save(force_insert=True)
    except Exception as exc:
        # A claimed run that cannot start is recorded as failed and frees its session at once.
        if isinstance(exc, ChatModelError):
            code, log = exc.code, str(exc)
        else:
            code = "database_error" if isinstance(exc, DatabaseError) else "internal_error"
            log = f"{type(exc).__name__}: {exc}"
        _record_unstarted(run, code, log)
        raise
    # The version's prompt with the session's variable values in it (context/prompt.py: no template engine).
    system_prompt = system_prompt_for(version, session)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
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
    ctx = RunContext(run=run, session=session, version=version, request=request)
    leases.keeper.add(ctx.run_uuid)
    ctx.emit(events.RUN_STARTED, stream=stream, model=version.model, version=version.number)
    return ctx


def _record_unstarted(run: Run, code: str, log: str) -> None:
    """Store a claimed run that failed before its model call, and free the session."""
    try:
        if run.pk is None:
            run.status, run.error, run.error_log, run.finished_at = Run.Status.FAILED, code[:40], log, timezone.now()
            run.save(force_insert=True)
            leases.release(session_id=run.session_id, run_uuid=run.uuid, failed_seq=run.last_seq)
        else:
            _fail(run, code, log)
    except DatabaseError:
        logger.exception("chatmodel run %s: could not record the failure", run.uuid)
        with contextlib.suppress(DatabaseError):
            leases.release(session_id=run.session_id, run_uuid=run.uuid)


def storable(value: Any) -> Any:
    """Model output as the database can keep it: NUL (U+0000), which PostgreSQL refuses, becomes U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def _fail(run: Run, code: str, log: str, *, status: str = Run.Status.FAILED, partial: str = "", **fields: Any) -> None:
    """Record a failed run and free its session; the session's messages stay as they were."""
    Run.objects.filter(pk=run.pk).update(
        status=status,
        error=code[:40],
        error_log=storable(log),
        partial_content=storable(partial),
        finished_at=timezone.now(),
        **fields,
    )
    # Remember what the failed run was given, so the seed's retry (re-adding it) is recognised.
    leases.release(session_id=run.session_id, run_uuid=run.uuid, failed_seq=run.last_seq)


def _fail_quietly(run: Run, code: str, log: str, *, partial: str = "", status: str = Run.Status.FAILED) -> None:
    try:
        _fail(run, code, log, partial=partial, status=status)
    except DatabaseError:
        # The database is gone: the lease frees the session when it expires.
        logger.exception("chatmodel run %s: could not record the failure", run.uuid)


def _timings(ctx: RunContext) -> dict[str, int | None]:
    now = time.monotonic()
    ttft = None if ctx.first_token_at is None else int((ctx.first_token_at - ctx.started) * 1000)
    return {"latency_ms": int((now - ctx.started) * 1000), "time_to_first_token_ms": ttft}


def run_finish(ctx: RunContext, completion: Completion, *, cancelled: bool = False) -> LLMResponse:
    """Store the reply and the Run, release the session, send ``run_finished``."""
    run = ctx.run
    status = Run.Status.CANCELLED if cancelled else Run.Status.COMPLETED
    # A provider may send NUL: stored as U+FFFD (PostgreSQL cannot keep it), and so answered and streamed alike.
    completion.content = storable(completion.content)
    completion.tool_calls = storable(completion.tool_calls)
    completion.function_call = storable(completion.function_call)
    usage = completion.usage or {}
    tool_calls = completion.tool_calls
    function_call = completion.function_call
    if function_call and not tool_calls:
        # A legacy function_call is stored in the modern form too, so its result can name it.
        tool_calls = [{"id": f"call_{run.uuid.hex[:24]}", "type": "function", "function": function_call}]
    content = completion.content
    if cancelled and not (content or tool_calls):
        content = None
    rolled_back = cancelled and ctx.run_uuid in leases.keeper.rollbacks
    if rolled_back:
        # Double-texting "rollback": the conversation goes on without this reply; the Run keeps its text.
        content, tool_calls, function_call = None, None, None
    stored: Message | None = None
    # Our own count, as for every stored message (the budget adds these up), made outside the transaction.
    reply_tokens = message_tokens(run.model, {"content": content, "tool_calls": tool_calls})
    try:
        with transaction.atomic():
            now = timezone.now()
            fields = dict(
                status=status,
                finish_reason=completion.finish_reason or "",
                # A stopped stream has no usage (or a rebuilt one of 0): the prompt was sent, so count our estimate.
                prompt_tokens=usage.get("prompt_tokens") or (run.estimated_prompt_tokens if cancelled else None),
                completion_tokens=usage.get("completion_tokens"),
                cost=completion.cost,
                model=(completion.answered_model or run.model)[:200],
                attempts=completion.attempts,
                # The snapshot of a stream in progress is now the stored reply (or, rolled back, the record of it).
                partial_content=(completion.content or "") if rolled_back else "",
                finished_at=now,
                **_timings(ctx),
            )
            if content is not None or tool_calls:
                if not leases.release(session_id=run.session_id, run_uuid=run.uuid, reserve=1):
                    raise SessionBusy("the run's lease expired before it finished; its reply was not stored")
                next_seq, queued, branch = (
                    Session.objects.filter(pk=run.session_id).values_list("next_seq", "queued", "branch").get()
                )
                seq = next_seq - 1
                ctx.queue_waiting = bool(queued)
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
                    branch=branch,
                )
            else:
                leases.release(session_id=run.session_id, run_uuid=run.uuid)
            Run.objects.filter(pk=run.pk).update(**fields)
            for key, value in fields.items():
                setattr(run, key, value)
    except (DatabaseError, SessionBusy) as exc:
        code = "lease_lost" if isinstance(exc, SessionBusy) else "database_error"
        log = f"The reply could not be stored: {exc}"
        logger.exception("chatmodel run %s: %s", run.uuid, log)
        _fail_quietly(run, code, log, partial=completion.content or "")
        leases.keeper.discard(ctx.run_uuid)
        ctx.emit(events.RUN_FAILED, status=Run.Status.FAILED, error=code, error_log=log)
        return _error_response(code, log, ctx=ctx)
    leases.keeper.discard(ctx.run_uuid)
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


def run_fail(ctx: RunContext, error: LLMError, *, partial: str = "", incomplete: bool = False) -> LLMResponse:
    """Record a failed (or incomplete) run and return its error response."""
    status = Run.Status.INCOMPLETE if incomplete else Run.Status.FAILED
    _fail_quietly(ctx.run, error.code, error.message, partial=partial, status=status)
    if ctx.session.branches:
        from .branches import after_failed_run  # a regenerate that got no reply gives the old one back

        after_failed_run(session_id=ctx.session.pk)
    # A cut stream's prompt was sent and paid for: record our estimate of it, as for a stopped run.
    sent = {"prompt_tokens": ctx.run.estimated_prompt_tokens} if incomplete else {}
    with contextlib.suppress(DatabaseError):
        Run.objects.filter(pk=ctx.run.pk).update(**_timings(ctx), **sent)
    leases.keeper.discard(ctx.run_uuid)
    response = _error_response(error.code, error.message, ctx=ctx, status=status)
    ctx.emit(events.RUN_FAILED, status=status, error=error.code, error_log=error.message, partial_content=partial)
    ctx.run.status, ctx.run.error, ctx.run.error_log = status, error.code, error.message
    if incomplete:
        ctx.run.prompt_tokens = ctx.run.estimated_prompt_tokens
    run_finished.send(sender=Run, run=ctx.run, response=response)
    return response


def _response(
    ctx: RunContext,
    completion: Completion,
    stored: Message | None,
    *,
    tool_calls: list[dict[str, Any]] | None,
    status: str,
) -> LLMResponse:
    calls = [ToolCall.from_dict(c) for c in tool_calls] if tool_calls else None
    return LLMResponse(
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


def run_cancel(*, session: Session, rollback: bool = False) -> Run | None:
    """Ask the session's active run to stop; it keeps what was generated, marked cancelled.

    With ``rollback`` (double-texting), what it generated stays on the Run but is not stored as a message.
    """
    active = leases.holder(session_id=session.pk)
    if active is None:
        return None
    leases.keeper.cancel(str(active), rollback=rollback)
    # Other processes see the flag at their next beat, or at once through their control channel (live.py).
    Run.objects.filter(uuid=active, status=Run.Status.IN_PROGRESS).update(
        cancel_requested=True, rollback_requested=rollback
    )
    run = Run.objects.filter(uuid=active).first()
    if run is not None and run.worker_channel and run.worker_channel != live.worker_channel():
        from asgiref.sync import async_to_sync

        with contextlib.suppress(Exception):
            async_to_sync(live.send_cancel)(run, rollback=rollback)
    return run


def _run_steps(
    session: Session, functions: Any, tools: Any, params: Mapping[str, Any] | None
) -> Generator[Cmd, Any, None]:
    """A non-streamed run, as steps for a driver."""
    try:
        ctx = yield call(run_start, session=session, functions=functions, tools=tools, params=params)
    except Exception as exc:
        yield emit(error_response(exc, session=session))
        return
    yield Cmd("publish", ctx)
    try:
        completion = yield Cmd("complete", ctx.request)
    except Exception as exc:  # never let a run raise
        response = yield call(run_fail, ctx, llm.map_exception(exc))
    else:
        response = yield call(run_finish, ctx, completion, cancelled=ctx.cancelled())
    yield Cmd("publish", ctx)
    yield from follow_up(ctx)
    yield emit(response)


def follow_up(ctx: RunContext) -> Generator[Cmd, Any, None]:
    """After a run: start the next one if messages were enqueued meanwhile (double-texting "enqueue")."""
    if ctx.queue_waiting is not False:
        yield Cmd("follow", ctx.session)


def run(
    *, session: Session, functions: Any = None, tools: Any = None, params: Mapping[str, Any] | None = None
) -> LLMResponse:
    """Run the model on the session and store its reply; never raises."""
    return Driver(_run_steps(session, functions, tools, params)).pump(perform)


async def arun(
    *, session: Session, functions: Any = None, tools: Any = None, params: Mapping[str, Any] | None = None
) -> LLMResponse:
    """``run`` with a native async model call; never raises."""
    return await Driver(_run_steps(session, functions, tools, params)).apump(aperform)
