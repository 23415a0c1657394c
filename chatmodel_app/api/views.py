"""REST views: validate with a serializer, call ``services.py``, serialize. Statuses come from ``errors.py``."""

from __future__ import annotations

import uuid as uuid_module
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.handlers.asgi import ASGIRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from .. import access, selectors, services, validation
from ..conf import conf
from ..exceptions import InvalidParams, SessionOfOtherChatModel
from ..models import Session
from ..services import branches, conversations, double_texting, live
from ..services.sessions import session_variables_match
from . import errors, permissions, serializers, sse, throttling
from .base import (
    CHAT_MODEL_NAME,
    ERRORS,
    FIELD_ERRORS,
    SESSION_UUID,
    ChatModelAPIView,
    EventStreamRenderer,
    _chat_model,
    _query,
    _session,
    _valid,
    extend_schema,
)
from .schema import SchemaView, only_api_endpoints, schema_states_checked_limits  # noqa: F401  (urls, settings)

# --- chat models ---------------------------------------------------------------------------------------


class ChatModelListView(ChatModelAPIView):
    @extend_schema(
        operation_id="chat_models_list",
        summary="List the chat models",
        responses={200: serializers.ChatModelSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(serializers.ChatModelSerializer(services.chat_model_list(), many=True).data)


class ChatModelConfigView(ChatModelAPIView):
    extra_permission_classes = [permissions.CanReadConfig]

    @extend_schema(
        operation_id="chat_model_config",
        summary="Get a chat model's config (system prompt, version, a session's messages)",
        description="Needs the Django permission named by CHATMODEL_API_CONFIG_PERMISSION "
        "(default chatmodel_app.view_version). With session_uuid, the session's pinned version is used.",
        parameters=[CHAT_MODEL_NAME, serializers.ConfigQuerySerializer],
        responses={200: serializers.ConfigSerializer, 400: FIELD_ERRORS, **ERRORS},
    )
    def get(self, request: Request, name: str) -> Response:
        query = _valid(serializers.ConfigQuerySerializer, _query(request))
        chat_model = _chat_model(name)
        if "session_uuid" in query:
            session = _session(request, query["session_uuid"])
            if session.chat_model_id != chat_model.pk:
                raise SessionOfOtherChatModel(f"Session {session.uuid} belongs to another chat model.")
            config = selectors.config_build(version=session.version, session=session)
        else:
            version = selectors.version_resolve(chat_model=chat_model, spec=query["version"])
            config = selectors.config_build(version=version)
        return Response(config.to_dict())


# --- sessions --------------------------------------------------------------------------------------------


class SessionCreateView(ChatModelAPIView):
    @extend_schema(
        operation_id="session_create",
        summary="Start a session",
        parameters=[CHAT_MODEL_NAME],
        request=serializers.SessionCreateSerializer,
        responses={
            201: serializers.SessionSerializer,
            200: OpenApiResponse(serializers.SessionSerializer, description="The session with that uuid, yours."),
            400: FIELD_ERRORS,
            409: OpenApiResponse(
                serializers.ErrorSerializer,
                description="That uuid is a session of yours on another chat model (session_exists).",
            ),
            **ERRORS,
        },
    )
    def post(self, request: Request, name: str) -> Response:
        data = _valid(serializers.SessionCreateSerializer, request.data)
        chat_model = _chat_model(name)
        if data.get("uuid") in RESERVED_UUIDS:
            raise _uuid_unusable()
        try:
            session, created = services.session_open(
                chat_model=chat_model,
                user=request.user,
                version=data["version"],
                metadata=data["metadata"],
                session_uuid=data.get("uuid"),
                variables=data.get("variables"),
            )
        except InvalidParams as exc:
            raise _variables_error(exc) from None
        if not created and access.session_access(request.user, session) != "write":
            # Someone else's: refused as any unusable uuid is, so a caller cannot tell it exists.
            raise _uuid_unusable()
        if not created and session.chat_model_id != chat_model.pk:
            return Response(
                {"detail": "A session with this uuid already exists.", "code": "session_exists"},
                status=status.HTTP_409_CONFLICT,
                headers={errors.ERROR_CODE_HEADER: "session_exists"},
            )
        if not created:
            try:
                session_variables_match(session=session, variables=data.get("variables"))
            except InvalidParams as exc:
                raise _variables_error(exc) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(serializers.SessionSerializer(session).data, status=code)


# Not session uuids: the nil and max uuids are what a client sends by mistake (an unset field), never at random.
RESERVED_UUIDS = frozenset({uuid_module.UUID(int=0), uuid_module.UUID(int=2**128 - 1)})


def _variables_error(exc: InvalidParams) -> Exception:
    """A refused ``variables`` value as a field error of ``variables`` (other refusals as they are)."""
    if exc.field != "variables":
        return exc
    return errors.FieldErrors({"variables": [str(exc)]}, error_code=exc.code)


def _uuid_unusable() -> errors.FieldErrors:
    """The one answer for a uuid this caller may not create: reserved, or another user's session."""
    detail = {"uuid": ["This uuid cannot be used for a new session: choose another (a random uuid4)."]}
    return errors.FieldErrors(detail, error_code=InvalidParams.code)


class SessionPagination(CursorPagination):
    # Named conversations: most recently active first (last_activity_at is set as messages are added).
    ordering = ("-last_activity_at", "-pk")
    page_size_query_param = "limit"
    invalid_cursor_message = "Invalid cursor: use the next or previous link of a page as it was given."

    def __init__(self) -> None:
        self.page_size = conf.API_PAGE_SIZE
        self.max_page_size = conf.API_MAX_PAGE_SIZE

    def decode_cursor(self, request: Request) -> Any:
        """DRF's cursor, or a 400 for one that is not (DRF says 404; a bad position reached the database)."""
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                # The position is a last_activity_at value; anything else would fail in the query, as a 500.
                Session._meta.get_field("last_activity_at").to_python(cursor.position)
        except (NotFound, DjangoValidationError, ValueError, OverflowError):
            raise errors.FieldErrors({"cursor": [self.invalid_cursor_message]}, error_code=InvalidParams.code) from None
        return cursor


class SessionListView(ChatModelAPIView):
    @extend_schema(
        operation_id="sessions_list",
        summary="List your sessions, most recently active first; archived ones with ?archived=, search with ?q=",
        parameters=[serializers.SessionListQuerySerializer],
        responses={200: serializers.SessionPageSerializer, 400: FIELD_ERRORS, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _valid(serializers.SessionListQuerySerializer, _query(request))
        chat_model = selectors.chat_model_get(name=query["chat_model"]) if "chat_model" in query else None
        paginator = SessionPagination()
        sessions = conversations.conversation_list(
            user=request.user,
            chat_model=chat_model,
            archived=validation.archived_filter_clean(query["archived"]),
            q=query.get("q", ""),
        )
        page = paginator.paginate_queryset(sessions, request)
        return paginator.get_paginated_response(serializers.SessionSerializer(page, many=True).data)


class SessionDetailView(ChatModelAPIView):
    @extend_schema(
        operation_id="session_retrieve",
        summary="Get a session",
        parameters=[SESSION_UUID],
        responses={200: serializers.SessionSerializer, **ERRORS},
    )
    def get(self, request: Request, uuid: str) -> Response:
        return Response(serializers.SessionSerializer(_session(request, uuid)).data)


# --- messages ---------------------------------------------------------------------------------------------


class MessagesView(ChatModelAPIView):
    @extend_schema(
        operation_id="messages_list",
        summary="Page through a session's messages by seq",
        parameters=[SESSION_UUID, serializers.MessagePageQuerySerializer],
        responses={200: serializers.MessagePageSerializer, 400: FIELD_ERRORS, **ERRORS},
    )
    def get(self, request: Request, uuid: str) -> Response:
        session = _session(request, uuid)
        query = _valid(serializers.MessagePageQuerySerializer, _query(request))
        limit = query.get("limit", conf.API_PAGE_SIZE)
        order = query["order"]
        rows, has_more = services.message_page(
            session=session, after=query.get("after"), before=query.get("before"), limit=limit, order=order
        )
        next_url = None
        if has_more and rows:
            cursor = {**{k: v for k, v in query.items() if k in ("after", "before")}, "limit": limit, "order": order}
            cursor["before" if order == "desc" else "after"] = rows[-1].seq
            next_url = request.build_absolute_uri(f"{request.path}?{urlencode(cursor)}")
        # Each with "alternatives" ({"index", "count"} where the message has siblings: services/branches.py).
        results = branches.messages_with_alternatives(session=session, messages=rows)
        return Response({"results": results, "has_more": has_more, "next": next_url})

    @extend_schema(
        operation_id="messages_add",
        summary="Add messages to a session (add_messages)",
        description="Send an `Idempotency-Key` header (any unique string up to 128 characters) to make a retry "
        "safe: a call whose key was already stored in this session stores nothing and returns the stored messages.",
        parameters=[
            SESSION_UUID,
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Makes retrying this call safe (1-128 characters).",
            ),
        ],
        request=serializers.MessagesAddSerializer,
        responses={
            201: serializers.MessagesAddedSerializer,
            202: OpenApiResponse(
                serializers.MessagesAddedSerializer,
                description="A run is active and the policy is enqueue: stored and run after it, in order.",
            ),
            400: FIELD_ERRORS,
            409: OpenApiResponse(
                serializers.ErrorSerializer,
                description="A run is in progress and the double-texting policy is reject (session_busy).",
            ),
            **ERRORS,
        },
    )
    def post(self, request: Request, uuid: str) -> Response:
        session = _session(request, uuid, write=True)
        data = _valid(serializers.MessagesAddSerializer, request.data)
        wait = throttling.submit_throttle_wait(request, session, data.get("double_texting"))
        if wait is not None:  # they would start a run: counted against the run throttle, before anything changes
            self.throttled(request, wait or None)  # type: ignore[arg-type]  # DRF's stubs: DRF takes None too
        submitted = double_texting.messages_submit(
            session=session,
            messages=data["messages"],
            allowed_roles=conf.API_ALLOWED_ROLES,
            idempotency_key=request.headers.get("Idempotency-Key") or None,
            double_texting=data.get("double_texting"),
        )
        body: dict[str, Any] = {"messages": [selectors.message_json(m) for m in submitted.messages]}
        if submitted.policy is None:
            return Response(body, status=status.HTTP_201_CREATED)
        if submitted.run == "start":
            double_texting.start_run(session=session)
        body.update(double_texting=submitted.policy, run="queued" if submitted.run == "queued" else "started")
        # Queued messages are not stored yet: accepted, to be stored and run after the active run.
        code = status.HTTP_202_ACCEPTED if submitted.run == "queued" else status.HTTP_201_CREATED
        return Response(body, status=code)


# --- runs ---------------------------------------------------------------------------------------------------

_LLM = serializers.LLMResponseSerializer
SSE_DESCRIPTION = (
    "Server-Sent Events, one per run event: `id: <run_id>:<seq>`, `event: <type>`, `data: <the event as JSON>`. "
    "The stream ends after run.completed or run.failed, whose data also has `response`: the final LLMResponse "
    "fields. The schema describes one event (OpenAPI 3.1 reading of text/event-stream)."
)
_RUN_EVENT_TYPES = ["run.started", "run.delta", "run.tool_call_delta", "run.completed", "run.failed"]
_NULLABLE_STRING = {"type": ["string", "null"]}
RUN_EVENT_SCHEMA = {
    "type": "object",
    "required": ["type", "session_uuid", "run_id", "seq"],
    "properties": {
        "type": {"type": "string", "enum": _RUN_EVENT_TYPES},
        "session_uuid": {"type": "string"},
        "run_id": _NULLABLE_STRING,
        "seq": {"type": "integer", "minimum": 1, "description": "The run's events, counted from 1."},
        "stream": {"type": "boolean"},
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "delta": {"type": "string", "description": "run.delta: the next piece of text."},
        "deltas": {"type": "array", "items": {"type": "object"}, "description": "run.tool_call_delta."},
        "status": _NULLABLE_STRING,
        "message": {"oneOf": [{"$ref": "#/components/schemas/Message"}, {"type": "null"}]},
        "usage": {"type": ["object", "null"]},
        "cost": {"type": ["number", "null"]},
        "finish_reason": _NULLABLE_STRING,
        "error": _NULLABLE_STRING,
        "error_log": _NULLABLE_STRING,
        "partial_content": _NULLABLE_STRING,
        "response": {"$ref": "#/components/schemas/LLMResponse"},
    },
}
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f-]*:[0-9]+$", "description": "<run_id>:<seq>"},
        "event": {"type": "string", "enum": _RUN_EVENT_TYPES},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": RUN_EVENT_SCHEMA},
    },
}


class RunView(throttling.RunThrottled, ChatModelAPIView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="run",
        summary="Run the model on the session and return (or stream) its reply",
        description="The reply is stored in the session whatever happens to the connection. Status codes: 200 "
        "answered (or cancelled); 400 bad request, or the conversation is too long for the model "
        "(error_code context_window_exceeded); 409 session busy; 429 throttled; 502 the model failed; 504 the "
        "model timed out; 500 this server failed. Failures of the run have the LLMResponse body with error, "
        "error_code and error_log.",
        parameters=[SESSION_UUID],
        request=serializers.RunSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(
                _LLM, description="The reply as JSON (LLMResponse), or with stream, as Server-Sent Events."
            ),
            (200, sse.CONTENT_TYPE): OpenApiResponse(SSE_EVENT_SCHEMA, description=SSE_DESCRIPTION),
            (400, "application/json"): FIELD_ERRORS,
            (401, "application/json"): ERRORS[401],
            (403, "application/json"): ERRORS[403],
            (404, "application/json"): ERRORS[404],
            (409, "application/json"): OpenApiResponse(_LLM, description="Another run holds the session."),
            (429, "application/json"): OpenApiResponse(serializers.ErrorSerializer, description="Throttled."),
            (500, "application/json"): OpenApiResponse(_LLM, description="This server failed."),
            (502, "application/json"): OpenApiResponse(_LLM, description="The model (provider) failed."),
            (504, "application/json"): OpenApiResponse(_LLM, description="The model timed out."),
        },
    )
    def post(self, request: Request, uuid: str) -> Any:
        session = _session(request, uuid, write=True)
        data = _valid(serializers.RunSerializer, request.data, version=session.version)
        kwargs = {"session": session, "functions": data["functions"], "tools": data["tools"], "params": data["params"]}
        # Accept: text/event-stream (or ?format=sse) picks the stream renderer: a stream too.
        if data["stream"] or isinstance(request.accepted_renderer, EventStreamRenderer):
            return self._stream(request, kwargs)
        return errors.run_response(services.run(**kwargs))

    def _stream(self, request: Request, kwargs: dict[str, Any]) -> Any:
        pump = sse.RunPump(lambda: services.run_stream(**kwargs)).start()
        first = pump.first_chunk()
        if first is not None and first.is_final and first.run_uuid is None:
            # Refused before the run began (busy, too long): a plain JSON error, not a stream.
            return errors.run_response(first)
        asynchronous = isinstance(request._request, ASGIRequest)
        return sse.response(pump, asynchronous=asynchronous, keepalive=conf.API_SSE_KEEPALIVE_SECONDS)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and isinstance(response.accepted_renderer, EventStreamRenderer):
            # Errors are JSON even to a client that asked for a stream.
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = "application/json"
        return response


class CancelView(ChatModelAPIView):
    @extend_schema(
        operation_id="run_cancel",
        summary="Stop the session's active run; what it generated is kept, marked cancelled",
        parameters=[SESSION_UUID],
        request=None,
        responses={200: serializers.CancelSerializer, **ERRORS},
    )
    def post(self, request: Request, uuid: str) -> Response:
        session = _session(request, uuid, write=True)
        run = services.run_cancel(session=session)
        return Response(
            {
                "cancel_requested": run is not None,
                "run_uuid": str(run.uuid) if run is not None else None,
                "status": run.status if run is not None else None,
            }
        )


class RunEventsView(ChatModelAPIView):
    renderer_classes = [EventStreamRenderer, JSONRenderer]

    @extend_schema(
        operation_id="run_events",
        summary="Rejoin the session's live run: its text so far, then its events (SSE)",
        description="A client that connects or reconnects mid-run gets a `run.snapshot` event (the run's text and "
        "tool-call deltas up to its `seq`), then every later event of the run, to `run.completed` or `run.failed`. "
        "Send `Last-Event-ID` (the `id` of the last frame you got, `<run_id>:<seq>`) to skip what you have. "
        "204 when no run is in progress. Works on any worker (ASGI).",
        parameters=[
            SESSION_UUID,
            OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description="SSE frames."),
            204: OpenApiResponse(description="No run is in progress."),
            **ERRORS,
        },
    )
    def get(self, request: Request, uuid: str) -> Any:
        session = _session(request, uuid)
        run = live.active_run(session_id=session.pk)
        if run is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return sse.follow_response(
            session,
            run,
            last_event_id=request.headers.get("Last-Event-ID"),
            keepalive=conf.API_SSE_KEEPALIVE_SECONDS,
        )
