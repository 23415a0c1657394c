"""The AI SDK door's views: the REST API's base view (authentication, permissions, throttle, errors) and pipeline.

- ``ChatView``: ``POST <name>/chat`` stores what is new and streams the run as a UI message stream.
- ``ChatStreamView``: ``GET <name>/chat/<id>/stream`` resumes the chat's live run (204 when none);
  ``DELETE`` on it stops that run (a closed connection never does: the run belongs to the server).
- ``ChatMessagesView``: ``GET <name>/chat/<id>/messages``, the stored history as ``UIMessage`` objects.

Not in the OpenAPI schema (``api/schema/``): this is the AI SDK's protocol, documented in docs/ai-sdk.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .. import selectors, services
from ..api import errors, serializers, sse, throttling
from ..api.base import ChatModelAPIView, _chat_model, _session, _valid, extend_schema
from ..conf import conf
from ..exceptions import InvalidMessages, SessionOfOtherChatModel
from ..models import ChatModel, Message, Run, Session
from ..services import live
from . import chats, wire


def _open(request: Request, chat_model: ChatModel, chat_id: str) -> Session:
    """The chat's session, created on first use; another user's (or another chat model's) is 404."""
    session_uuid = chats.session_uuid_for(chat_id, user=request.user, chat_model=chat_model)
    session, created = services.session_open(chat_model=chat_model, user=request.user, session_uuid=session_uuid)
    if not created:
        session = _session(request, str(session.uuid), write=True)
    if session.chat_model_id != chat_model.pk:
        raise SessionOfOtherChatModel(f"No chat {chat_id!r} of chat model {chat_model.name!r}.")
    return session


def _existing(request: Request, chat_model: ChatModel, chat_id: str, *, write: bool) -> Session | None:
    """The chat's session if it exists (None if not); another user's (or another chat model's) is 404."""
    chats.check_id(chat_id, "id")
    session_uuid = chats.session_uuid_for(chat_id, user=request.user, chat_model=chat_model)
    if not Session.objects.filter(uuid=session_uuid).exists():
        return None
    session = _session(request, str(session_uuid), write=write)
    if session.chat_model_id != chat_model.pk:
        raise SessionOfOtherChatModel(f"No chat {chat_id!r} of chat model {chat_model.name!r}.")
    return session


def _stream(content: Any, session: Session) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type=wire.CONTENT_TYPE)
    for key, value in wire.HEADERS.items():
        response[key] = value
    response[wire.SESSION_HEADER] = str(session.uuid)
    return response


class ChatView(throttling.RunThrottled, ChatModelAPIView):
    """One run per request, counted against the same limit as REST's and the websocket's runs."""

    @extend_schema(exclude=True)
    def post(self, request: Request, name: str) -> Any:
        chat_model = _chat_model(name)
        body = chats.parse_request(request.data)
        session = _open(request, chat_model, body.chat_id)
        # The body's other keys are run options and sampling parameters, refused as REST refuses them.
        options = _valid(serializers.RunSerializer, body.extra, version=session.version)
        found = chats.history(session, body.messages)
        continues: str | None = None
        if body.trigger == "regenerate-message":
            chats.regenerate(session, found)
        elif (results := chats.tool_results(session, found)) or found.new:
            # Tool results the client added to the reply it ends on come first, then its new messages.
            new = results + chats.to_store(found.new)
            services.messages_add(session=session, messages=new, allowed_roles=conf.API_ALLOWED_ROLES)
            if results and not found.new and found.last_known is not None:
                # The answer continues that reply in the client (as the AI SDK's own servers do): same message id.
                continues = found.last_known["id"]
        else:
            last = selectors.session_messages(session=session).order_by("-seq").first()
            if last is None or last.role == Message.Role.ASSISTANT:
                raise InvalidMessages("Nothing to answer: every message sent is stored and answered.", field="messages")
            # The last stored message (the user's, or a tool result) has no reply (its run failed): answer it now.
        # Read again: the run starts from what was just stored (the seq counter, the branch).
        session = selectors.session_get(session_uuid=session.uuid)
        kwargs = {"session": session, "functions": options["functions"], "tools": options["tools"]}
        translator = wire.Translator(message_id=continues)
        pump = sse.RunPump(lambda: services.run_stream(**kwargs, params=options["params"]), render=translator).start()
        first = pump.first_chunk()
        if first is not None and first.is_final and first.run_uuid is None:
            # Refused before the run began (busy, too long): a JSON error, as the REST API answers it.
            return errors.run_response(first)
        keepalive = conf.API_SSE_KEEPALIVE_SECONDS
        if isinstance(request._request, ASGIRequest):
            return _stream(wire.closed(pump.aframes(keepalive), translator), session)
        return _stream(_sync_closed(pump.frames(keepalive), translator), session)


def _sync_closed(frames: Any, translator: wire.Translator) -> Any:
    yield from frames
    tail = translator.close()
    if tail:
        yield tail


def _stored_end(run_pk: int) -> dict[str, Any] | None:
    """A run's stored outcome and reply once it has ended (None while it is in progress)."""
    run = Run.objects.select_related("session").filter(pk=run_pk).first()
    if run is None or run.status == Run.Status.IN_PROGRESS:
        return None
    reply = Message.objects.filter(run=run, role=Message.Role.ASSISTANT).values("content", "tool_calls").first()
    fields: dict[str, Any] = {"uuid": str(run.uuid), "session_uuid": str(run.session.uuid), "status": run.status}
    fields.update(finish_reason=run.finish_reason, error=run.error, error_log=run.error_log, reply=reply)
    return fields


async def _watched(frames: AsyncIterator[bytes], translator: wire.Translator, run_pk: int) -> AsyncIterator[bytes]:
    """``frames`` of a resumed run; at each keep-alive, a look at the Run row: a run that ended without its last
    event reaching this stream (it ended as the stream joined, or the channel layer dropped it) ends the stream
    from its stored record rather than leaving the client waiting."""
    async for chunk in frames:
        yield chunk
        if translator.done:
            return
        if chunk.startswith(b":"):
            stored = await sync_to_async(_stored_end)(run_pk)
            if stored is not None:
                yield b"".join(translator(e) for e in wire.ending(translator, stored, stored.pop("reply")))
                return


class ChatStreamView(ChatModelAPIView):
    @extend_schema(exclude=True)
    def get(self, request: Request, name: str, chat_id: str) -> Any:
        session = _existing(request, _chat_model(name), chat_id, write=False)
        run = live.active_run(session_id=session.pk) if session is not None else None
        if session is None or run is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        translator = wire.Translator()
        # A resumed stream is a replay: the snapshot (start, the text so far), then the live parts (wire.py).
        frames = sse.follow(
            session, run, last_event_id=None, keepalive=conf.API_SSE_KEEPALIVE_SECONDS, render=translator
        )
        return _stream(wire.closed(_watched(frames, translator, run.pk), translator), session)

    @extend_schema(exclude=True)
    def delete(self, request: Request, name: str, chat_id: str) -> Response:
        session = _existing(request, _chat_model(name), chat_id, write=True)
        run = services.run_cancel(session=session) if session is not None else None
        return Response(
            {
                "cancel_requested": run is not None,
                "run_uuid": str(run.uuid) if run is not None else None,
                "status": run.status if run is not None else None,
            }
        )


class ChatMessagesView(ChatModelAPIView):
    @extend_schema(exclude=True)
    def get(self, request: Request, name: str, chat_id: str) -> Response:
        session = _existing(request, _chat_model(name), chat_id, write=False)
        if session is None:
            return Response([])
        response = Response(chats.ui_messages(session, limit=chats.max_history()))
        response[wire.SESSION_HEADER] = str(session.uuid)
        return response
