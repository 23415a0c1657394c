"""Streamed runs: one state machine (``_stream_steps``), driven in the caller's thread or awaited.

Cancel, the batched lease beat and the abandon path (the caller stops reading, or its task is
cancelled) are written once, in ``_stream_steps``; ``steps.py`` says how the drivers work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping
from typing import Any

from .. import events, llm
from ..llm import LLMError
from ..models import Run, Session
from ..types import LLMResponse, LLMStreamResponse
from . import leases, live
from .run_context import RunContext
from .runs import error_response, follow_up, run_fail, run_finish, run_start
from .steps import END, Abandoned, Cmd, Driver, aperform, call, emit, perform

logger = logging.getLogger("chatmodel_app")


class _StreamState:
    """Chunk -> response and events, and the ending."""

    def __init__(self, ctx: RunContext, stream: Any) -> None:
        self.ctx = ctx
        self.assembler = llm.StreamAssembler(stream, ctx.request["model"])
        # The keeper's beat saves the text so far on the Run: a rejoining client and a killed worker's record keep it.
        leases.keeper.add(ctx.run_uuid, partial=ctx.sent_so_far)
        live.register(ctx)

    def chunk(self, raw: Any) -> LLMStreamResponse | None:
        text, tool_deltas = self.assembler.feed(raw)
        if not text and not tool_deltas:
            return None
        self.ctx.mark_first_token()
        if text:
            self.ctx.emit_delta(text)
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
        try:
            return self._end(cancelled=cancelled, error=error)
        finally:
            live.unregister(self.ctx.run_uuid)

    def _end(self, *, cancelled: bool, error: LLMError | None) -> LLMStreamResponse:
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


def _with_events(chunk: LLMStreamResponse, published: list[dict[str, Any]]) -> Cmd:
    chunk.events = published
    return emit(chunk)


def _stream_steps(
    session: Session, functions: Any, tools: Any, params: Mapping[str, Any] | None
) -> Generator[Cmd, Any, None]:
    """The streamed run, as commands for a driver."""
    try:
        ctx = yield call(run_start, session=session, functions=functions, tools=tools, params=params, stream=True)
    except Exception as exc:
        yield emit(error_response(exc, session=session, stream=True))
        return
    pending = yield Cmd("publish", ctx)
    try:
        stream = yield Cmd("open", ctx.request)
        chunks = yield Cmd("iter", stream)
    except Exception as exc:
        final = final_chunk((yield call(run_fail, ctx, llm.map_exception(exc))))
        yield _with_events(final, pending + (yield Cmd("publish", ctx)))
        return
    state = _StreamState(ctx, stream)
    cancelled = False
    try:
        while (raw := (yield Cmd("next", chunks))) is not END:
            response = state.chunk(raw)
            if response is not None:
                yield _with_events(response, pending + (yield Cmd("publish", ctx)))
                pending = []
            if not ctx.cancelled() and leases.keeper.due():
                yield call(leases.keeper.beat)
            if ctx.cancelled():
                cancelled = True
                yield Cmd("close", stream)
                break
    except Abandoned:
        # The caller stopped reading: stop the model and keep what it said, as cancelled.
        yield Cmd("close", stream)
        yield call(state.end, cancelled=True)
        yield Cmd("publish", ctx)
        yield from follow_up(ctx)
        return
    except Exception as exc:
        final = yield call(state.end, error=llm.map_exception(exc))
    else:
        final = yield call(state.end, cancelled=cancelled)
    published = yield Cmd("publish", ctx)
    yield from follow_up(ctx)
    yield _with_events(final, pending + published)


def run_stream(
    *, session: Session, functions: Any = None, tools: Any = None, params: Mapping[str, Any] | None = None
) -> Iterator[LLMStreamResponse]:
    """Run the model on the session, yielding text deltas, then a final chunk; never raises.

    Nothing happens until the first ``next()``. Closing the iterator early cancels the
    run and keeps what was generated. Each chunk's ``events`` are the wire events it
    published (see ``events.py``).
    """
    driver = Driver(_stream_steps(session, functions, tools, params))
    try:
        while (chunk := driver.pump(perform)) is not None:
            yield chunk
    finally:
        driver.abandon()
        driver.pump(perform)


async def arun_stream(
    *, session: Session, functions: Any = None, tools: Any = None, params: Mapping[str, Any] | None = None
) -> AsyncGenerator[LLMStreamResponse, None]:
    """``run_stream`` with a native async model stream; never raises.

    A cancelled task (a closed socket) ends the run as a caller who stops reading does.
    """
    driver = Driver(_stream_steps(session, functions, tools, params))
    try:
        while (chunk := await driver.apump(aperform)) is not None:
            yield chunk
    finally:
        driver.abandon()
        await driver.apump(aperform)
