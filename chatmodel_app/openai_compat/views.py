"""The OpenAI-compatible views: translate the request, call ``services`` (through ``turns``), translate back.

Authentication (Bearer token first), permissions and throttles are the REST API's (``ChatModelAPIView``);
ownership is ``chatmodel_app.access`` (another user's conversation or response is a 404); errors are answered in
OpenAI's body by ``errors.exception_handler``.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .. import services
from ..api import sse, throttling
from ..api.base import ChatModelAPIView, _session
from ..conf import conf
from ..exceptions import InvalidMessages, InvalidParams, SessionNotFound
from ..models import Run, Session
from ..services import leases
from . import conversations, errors, ids, items, objects, streams, turns
from .auth import BearerTokenAuthentication


class ResponseNotFound(SessionNotFound):
    """No response with this id that the caller may see (404)."""

    code = "response_not_found"


class OpenAIView(ChatModelAPIView):
    """Base of this door's views: the REST API's rules, OpenAI's Bearer keyword and error body."""

    # Not part of the REST API's OpenAPI schema: OpenAI publishes this API's.
    schema = None  # type: ignore[assignment]
    # Names of run options in OpenAI's words, for error messages (the REST API's serializer checks them).
    param_names: dict[str, str] = {}

    def get_authenticators(self) -> list[Any]:
        # First, so a 401 says "WWW-Authenticate: Bearer" as OpenAI does.
        return [BearerTokenAuthentication(), *super().get_authenticators()]

    def get_exception_handler(self) -> Any:
        return errors.exception_handler


class RunningView(throttling.RunThrottled, OpenAIView):
    """A view that starts runs: the run throttle of every door."""

    @staticmethod
    def stream_response(request: Request, run_kwargs: dict[str, Any], render: Any) -> Any:
        """The run, pumped to its end on its own thread (``api.sse``), its events rendered for OpenAI's clients."""
        pump = sse.RunPump(lambda: services.run_stream(**run_kwargs), render=render).start()
        first = pump.first_chunk()
        if first is not None and first.is_final and first.run_uuid is None:
            # Refused before the run began (busy, too long): a plain JSON error, not a stream.
            return errors.run_error(first)
        asynchronous = isinstance(request._request, ASGIRequest)
        return sse.response(pump, asynchronous=asynchronous, keepalive=conf.API_SSE_KEEPALIVE_SECONDS)


# Fields some clients send at their default value; as good as not sent.
_DEFAULTS = {"logprobs": False}


def _body(request: Request) -> dict[str, Any]:
    """The JSON body, without the fields a client sent as null or at their default (as OpenAI reads them)."""
    data = request.data
    if not isinstance(data, dict):
        raise InvalidParams("The request body must be a JSON object.")
    return {k: v for k, v in data.items() if v is not None and not (k in _DEFAULTS and v == _DEFAULTS[k])}


def _only(body: dict[str, Any], allowed: frozenset[str]) -> None:
    """Refuse fields a request does not take (a provider setting among them is never silently dropped)."""
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise InvalidParams(
            f"Unknown field {unknown[0]!r}: this request takes {', '.join(sorted(allowed))}.", field=unknown[0]
        )


CONVERSATION_CREATE_FIELDS = frozenset({"metadata", "items", "model"})


def _conversation(request: Request, conversation_id: Any, *, write: bool = False) -> Session:
    """The session a ``conv_`` id names, if this user may see it (else 404, as if it did not exist)."""
    session_uuid = ids.session_uuid(conversation_id)
    try:
        if session_uuid is None:
            raise SessionNotFound("")
        return _session(request, str(session_uuid), write=write)
    except SessionNotFound:
        raise SessionNotFound(f"No conversation {conversation_id!r}.") from None


def _run(request: Request, response_id: Any, *, write: bool = False) -> Run:
    """The run a ``resp_`` id names, if this user may see its session (else 404)."""
    run_uuid = ids.run_uuid(response_id)
    run = None
    if run_uuid is not None:
        run = (
            Run.objects.select_related("session__chat_model", "session__version", "version__chat_model")
            .filter(uuid=run_uuid)
            .first()
        )
    if run is None:
        raise ResponseNotFound(f"No response {response_id!r}.")
    try:
        run.session = _session(request, str(run.session.uuid), write=write)
    except SessionNotFound:
        raise ResponseNotFound(f"No response {response_id!r}.") from None
    return run


def _limit(request: Request, default: int = 20, maximum: int = 100) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidParams(f"limit must be a whole number from 1 to {maximum}.", field="limit")
    return int(raw)


def _order(request: Request, default: str = "desc") -> str:
    order = request.query_params.get("order", default)
    if order not in ("asc", "desc"):
        raise InvalidParams("order must be asc or desc.", field="order")
    return order


def _item_list(data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


# --- models -------------------------------------------------------------------------------------------


class ModelListView(OpenAIView):
    def get(self, request: Request) -> Response:
        """Every chat model with a published version."""
        models = [m for m in services.chat_model_list() if any(v.is_published for v in m.versions.all())]
        return Response({"object": "list", "data": [objects.model_object(m) for m in models]})


class ModelDetailView(OpenAIView):
    def get(self, request: Request, model: str) -> Response:
        chat_model, spec = turns.model_parse(model)
        turns.version_for(chat_model, spec)  # 404 when nothing would answer
        return Response(dict(objects.model_object(chat_model), id=model))


# --- conversations ------------------------------------------------------------------------------------


class ConversationListView(OpenAIView):
    def post(self, request: Request) -> Response:
        """A new conversation: a session of the chat model named by ``model`` (or ``metadata.model``)."""
        body = _body(request)
        _only(body, CONVERSATION_CREATE_FIELDS)
        metadata = conversations.metadata_clean(body.get("metadata"))
        model = body.get("model", metadata.get("model"))
        if model is None:
            raise InvalidParams(
                "Name the chat model of the conversation: model (extra_body={'model': ...}) or metadata.model.",
                field="model",
            )
        chat_model, spec = turns.model_parse(model)
        version = turns.version_for(chat_model, spec)
        messages = items.input_messages(body.get("items"), field="items")
        if messages:
            turns.history_check(messages)
        session = turns.session_start(
            chat_model=chat_model, version=version, user=request.user, metadata=metadata, messages=messages
        )
        return Response(objects.conversation_object(session))


class ConversationDetailView(OpenAIView):
    def get(self, request: Request, conversation_id: str) -> Response:
        return Response(objects.conversation_object(_conversation(request, conversation_id)))

    def post(self, request: Request, conversation_id: str) -> Response:
        """Update: the conversation's metadata is replaced."""
        session = _conversation(request, conversation_id, write=True)
        body = _body(request)
        _only(body, frozenset({"metadata"}))
        if "metadata" not in body:
            raise InvalidParams("metadata is required.", field="metadata")
        metadata = conversations.metadata_clean(body["metadata"])
        session = conversations.conversation_update(session=session, metadata=metadata)
        return Response(objects.conversation_object(session))

    def delete(self, request: Request, conversation_id: str) -> Response:
        session = _conversation(request, conversation_id, write=True)
        public_id = ids.conversation_id(session.uuid)
        conversations.conversation_delete(session=session)
        return Response({"id": public_id, "object": "conversation.deleted", "deleted": True})


class ConversationItemsView(OpenAIView):
    def get(self, request: Request, conversation_id: str) -> Response:
        session = _conversation(request, conversation_id)
        page, has_more = conversations.item_page(
            session=session,
            after=request.query_params.get("after") or None,
            limit=_limit(request),
            order=_order(request),
        )
        return Response(_item_list(page, has_more))

    def post(self, request: Request, conversation_id: str) -> Response:
        """Add items: stored as the session's next messages (the REST API's roles and double-texting rules)."""
        session = _conversation(request, conversation_id, write=True)
        body = _body(request)
        _only(body, frozenset({"items"}))
        messages = items.input_messages(body.get("items"), field="items")
        if not messages:
            raise InvalidMessages("items must hold at least one item.", field="items")
        rows = turns.messages_append(session=session, messages=messages)
        added = [item for row in rows for item in items.message_items(row)]
        return Response(_item_list(added), status=status.HTTP_200_OK)


class ConversationItemView(OpenAIView):
    def get(self, request: Request, conversation_id: str, item_id: str) -> Response:
        session = _conversation(request, conversation_id)
        return Response(conversations.item_get(session=session, item_id=item_id))

    def delete(self, request: Request, conversation_id: str, item_id: str) -> Response:
        session = _conversation(request, conversation_id, write=True)
        conversations.item_get(session=session, item_id=item_id)
        raise InvalidParams("Items cannot be deleted: a session keeps every message it was given.", field="item_id")


# --- responses ----------------------------------------------------------------------------------------


class ResponseCreateView(RunningView):
    param_names = {"max_tokens": "max_output_tokens", "response_format": "text"}

    def post(self, request: Request) -> Any:
        """A run: on the conversation (or previous response's session) or on a new session, with ``input`` added."""
        body = _body(request)
        turns.responses_refusals(body)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidParams("stream must be true or false.", field="stream")
        session = self._session(request, body)
        if session is not None:
            turns.check_model_of(session, body.get("model"))
            version = session.version
        else:
            chat_model, spec = turns.model_parse(body.get("model"))
            version = turns.version_for(chat_model, spec)
        options = turns.run_options(turns.responses_run_fields(body), version)
        tools_echo = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        raw_input = body.get("input")
        if session is not None and isinstance(raw_input, list):
            # Items the conversation already has (a client sending back response.output) are not stored twice.
            known = conversations.stored_item_ids(
                session=session, candidates=[i.get("id") for i in raw_input if isinstance(i, dict) and i.get("id")]
            )
            raw_input = [i for i in raw_input if not (isinstance(i, dict) and i.get("id") in known)]
        messages = items.input_messages(raw_input)
        if session is None:
            if not messages:
                raise InvalidMessages("input is required to start a conversation.", field="input")
            turns.history_check(messages)
            metadata = conversations.metadata_clean(body.get("metadata"))
            session = turns.session_start(
                chat_model=chat_model, version=version, user=request.user, metadata=metadata, messages=messages
            )
        else:
            turns.messages_append(session=session, messages=messages)
        kwargs = options.kwargs(session)
        if stream:
            render = streams.ResponsesStream(session=session, model=objects.model_label(version), tools=tools_echo)
            return self.stream_response(request, kwargs, render)
        result = services.run(**kwargs)
        if result.error:
            return errors.run_error(result)
        run = Run.objects.select_related("version__chat_model").get(uuid=str(result.run_uuid))
        return Response(objects.response_object(run, session=session, tools=tools_echo))

    @staticmethod
    def _session(request: Request, body: dict[str, Any]) -> Session | None:
        conversation = body.get("conversation")
        if conversation is not None:
            conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
            return _conversation(request, conversation_id, write=True)
        previous = body.get("previous_response_id")
        if previous is not None:
            return _run(request, previous, write=True).session
        return None


class ResponseDetailView(OpenAIView):
    def get(self, request: Request, response_id: str) -> Response:
        run = _run(request, response_id)
        return Response(objects.response_object(run, session=run.session))

    def delete(self, request: Request, response_id: str) -> Response:
        _run(request, response_id, write=True)
        raise InvalidParams("Responses cannot be deleted: every run is kept (delete its conversation instead).")


class ResponseInputItemsView(OpenAIView):
    def get(self, request: Request, response_id: str) -> Response:
        """The items the response's run was given: the messages of its context window."""
        run = _run(request, response_id)
        if run.first_seq is None or run.last_seq is None:
            return Response(_item_list([]))
        page, has_more = conversations.item_page(
            session=run.session,
            after=request.query_params.get("after") or None,
            limit=_limit(request),
            order=_order(request),
            seqs=(run.first_seq, run.last_seq),
        )
        return Response(_item_list(page, has_more))


# How long a cancel waits for the run to stop, so its answer usually shows the cancelled response.
CANCEL_WAIT_SECONDS = 5.0


class ResponseCancelView(OpenAIView):
    def post(self, request: Request, response_id: str) -> Response:
        """Stop a response in progress; what it generated is kept (status cancelled). A finished one is returned."""
        run = _run(request, response_id, write=True)
        if run.status == Run.Status.IN_PROGRESS and leases.holder(session_id=run.session.pk) == run.uuid:
            services.run_cancel(session=run.session)
            deadline = time.monotonic() + CANCEL_WAIT_SECONDS
            while time.monotonic() < deadline:
                run.refresh_from_db(fields=["status"])
                if run.status != Run.Status.IN_PROGRESS:
                    break
                time.sleep(0.05)
            run.refresh_from_db()
        return Response(objects.response_object(run, session=run.session))


# --- chat completions -----------------------------------------------------------------------------------


class ChatCompletionView(RunningView):
    def post(self, request: Request) -> Any:
        """One call, one new session holding the client's history (docs/openai.md), then a run on it."""
        body = _body(request)
        chat_model, spec = turns.model_parse(body.get("model"))
        version = turns.version_for(chat_model, spec)
        messages = items.chat_messages(body.get("messages"))
        fields = {k: v for k, v in body.items() if k not in turns.CHAT_FIELDS}
        options = turns.run_options(fields, version)
        stream = bool(fields.get("stream"))
        stream_options = body.get("stream_options") or {}
        include_usage = bool(stream_options.get("include_usage")) if isinstance(stream_options, dict) else False
        metadata = conversations.metadata_clean(body.get("metadata"))
        turns.history_check(messages)
        session = turns.session_start(
            chat_model=chat_model,
            version=version,
            user=request.user,
            metadata={**metadata, "openai_endpoint": "chat.completions"},
            messages=messages,
        )
        kwargs = options.kwargs(session)
        if stream:
            render = streams.ChatCompletionStream(model=objects.model_label(version), include_usage=include_usage)
            return self.stream_response(request, kwargs, render)
        result = services.run(**kwargs)
        if result.error:
            return errors.run_error(result)
        run = Run.objects.select_related("version__chat_model").get(uuid=str(result.run_uuid))
        return Response(objects.chat_completion_object(run))
