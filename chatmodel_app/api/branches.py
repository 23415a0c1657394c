"""REST views of branches: regenerate, edit a message, switch alternatives, fork. Thin fronts over
``services.branches``; regenerate and edit answer like ``run/`` (JSON, or Server-Sent Events with stream)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers as drf
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .. import services
from ..conf import conf
from ..services import branches
from . import errors, serializers
from .base import (
    ERRORS,
    FIELD_ERRORS,
    SESSION_UUID,
    ChatModelAPIView,
    EventStreamRenderer,
    _path_seq,
    _session,
    _valid,
    extend_schema,
)
from .views import RunView

SEQ = OpenApiParameter("seq", OpenApiTypes.INT, OpenApiParameter.PATH, description="The message's seq.")
_DOUBLE_TEXTING = serializers.double_texting_field(
    "While a run is active: reject (409), or interrupt / rollback the active run first if the version "
    "allows it. enqueue is refused like reject: a regenerate or an edit cannot wait in the queue."
)


class RegenerateSerializer(serializers.InputSerializer):
    """``POST .../regenerate/``: the double-texting policy; every other field is ``run/``'s (RunSerializer)."""

    double_texting = _DOUBLE_TEXTING


class EditSerializer(RegenerateSerializer):
    """``POST .../messages/<seq>/edit/``: the new text; ``run: false`` stores it only; else as regenerate."""

    content = drf.CharField(allow_blank=False, trim_whitespace=False, help_text="The message's new text.")
    run = drf.BooleanField(required=False, default=True, help_text="Answer it at once (default), as run/ does.")


def _split(request: Request, own: type[serializers.InputSerializer], version: Any) -> dict[str, Any]:
    """This view's own fields (``own``) and the run's (RunSerializer), each validated by its serializer."""
    raw = request.data if isinstance(request.data, dict) else {}
    mine = {k: v for k, v in raw.items() if k in own().fields}
    rest = {k: v for k, v in raw.items() if k not in own().fields}
    return {**_valid(serializers.RunSerializer, rest, version=version), **_valid(own, mine)}


class SwitchSerializer(serializers.InputSerializer):
    index = drf.IntegerField(min_value=0, help_text="Which alternative to show, from 0 (the first written).")


class ForkSeqSerializer(serializers.InputSerializer):
    seq = drf.IntegerField(min_value=1, help_text="The last message to copy (of the current path).")


class PathSerializer(drf.Serializer):
    """The session's current path after the change: its newest messages, each with ``alternatives``."""

    session_uuid = drf.UUIDField()
    messages = serializers.MessageSerializer(many=True)
    has_more = drf.BooleanField(help_text="Older messages of the path are left out: page them with messages/.")


class ForkSerializer(drf.Serializer):
    session = serializers.SessionSerializer()
    messages = serializers.MessageSerializer(many=True)


def path_json(session: Any, limit: int | None = None) -> dict[str, Any]:
    """The newest ``limit`` messages of the current path, oldest first, each with its alternatives."""
    rows, more = services.message_page(session=session, limit=limit or conf.API_PAGE_SIZE, order="desc")
    rows.reverse()
    return {
        "session_uuid": str(session.uuid),
        "messages": branches.messages_with_alternatives(session=session, messages=rows),
        "has_more": more,
    }


class _Answering(RunView):
    """Regenerate and edit: change the path, then answer as ``run/`` does."""

    def _answer(self, request: Request, session: Any, data: dict[str, Any]) -> Any:
        kwargs = {"session": session, "functions": data["functions"], "tools": data["tools"], "params": data["params"]}
        if data["stream"] or isinstance(request.accepted_renderer, EventStreamRenderer):
            return self._stream(request, kwargs)
        return errors.run_response(services.run(**kwargs))


class RegenerateView(_Answering):
    @extend_schema(
        operation_id="regenerate",
        summary="Answer the last user message again; the old reply stays as an alternative",
        description="Puts the session on a new branch without its last reply, then runs as `run/` does (same "
        "body, statuses and stream). A failed run gives the old reply back. 409 while a run is active, unless "
        "`double_texting` is interrupt or rollback and the version allows it.",
        parameters=[SESSION_UUID],
        request=RegenerateSerializer,
        responses={
            200: OpenApiResponse(serializers.LLMResponseSerializer, description="As run/ (or its SSE stream)."),
            400: FIELD_ERRORS,
            409: OpenApiResponse(serializers.ErrorSerializer, description="A run is in progress (session_busy)."),
            **ERRORS,
        },
    )
    def post(self, request: Request, uuid: str) -> Any:
        session = _session(request, uuid, write=True)
        data = _split(request, RegenerateSerializer, session.version)
        branches.regenerate_prepare(session=session, double_texting=data.get("double_texting"))
        return self._answer(request, session, data)


class EditView(_Answering):
    @extend_schema(
        operation_id="message_edit",
        summary="Edit a user message: the conversation continues from it on a new branch",
        description="Stores the new text after the message's predecessors, on a new branch (the old message and "
        "what followed stay as an alternative), then runs as `run/` does. With `run: false`: 201 and the path.",
        parameters=[SESSION_UUID, SEQ],
        request=EditSerializer,
        responses={
            200: OpenApiResponse(serializers.LLMResponseSerializer, description="As run/ (or its SSE stream)."),
            201: OpenApiResponse(PathSerializer, description="run: false: stored, not answered."),
            400: FIELD_ERRORS,
            409: OpenApiResponse(serializers.ErrorSerializer, description="A run is in progress (session_busy)."),
            **ERRORS,
        },
    )
    def post(self, request: Request, uuid: str, seq: str) -> Any:
        session = _session(request, uuid, write=True)
        data = _split(request, EditSerializer, session.version)
        branches.message_edit(
            session=session, seq=_path_seq(seq), content=data["content"], double_texting=data.get("double_texting")
        )
        if not data["run"]:
            return Response(path_json(session), status=status.HTTP_201_CREATED)
        return self._answer(request, session, data)


class SwitchView(ChatModelAPIView):
    @extend_schema(
        operation_id="branch_switch",
        summary="Show another alternative of a message",
        description="`index` 0 is the message as first written; each regenerate or edit at that point added "
        "one. The path continues where that alternative was last left. Answers with the new path.",
        parameters=[SESSION_UUID, SEQ],
        request=SwitchSerializer,
        responses={200: PathSerializer, 400: FIELD_ERRORS, 409: OpenApiResponse(serializers.ErrorSerializer), **ERRORS},
    )
    def post(self, request: Request, uuid: str, seq: str) -> Any:
        session = _session(request, uuid, write=True)
        data = _valid(SwitchSerializer, request.data)
        branches.branch_switch(session=session, seq=_path_seq(seq), index=data["index"])
        return Response(path_json(session))


class PathView(ChatModelAPIView):
    @extend_schema(
        operation_id="session_path",
        summary="The newest messages of the current path, each with its alternatives",
        parameters=[SESSION_UUID],
        responses={200: PathSerializer, **ERRORS},
    )
    def get(self, request: Request, uuid: str) -> Any:
        return Response(path_json(_session(request, uuid)))


class ForkView(ChatModelAPIView):
    @extend_schema(
        operation_id="session_fork",
        summary="Copy the current path up to a message into a new session",
        parameters=[SESSION_UUID],
        request=ForkSeqSerializer,
        responses={201: ForkSerializer, 400: FIELD_ERRORS, **ERRORS},
    )
    def post(self, request: Request, uuid: str) -> Any:
        session = _session(request, uuid, write=True)
        data = _valid(ForkSeqSerializer, request.data)
        new = branches.session_fork(session=session, seq=data["seq"], user=request.user)
        rows, _more = services.message_page(session=new, limit=conf.API_PAGE_SIZE, order="desc")
        rows.reverse()
        body = {
            "session": serializers.SessionSerializer(new).data,
            "messages": branches.messages_with_alternatives(session=new, messages=rows),
        }
        return Response(body, status=status.HTTP_201_CREATED)
