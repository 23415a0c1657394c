"""REST views of named conversations (rename, archive, delete) and of feedback on replies.

Thin as the other views: validate with an input serializer, call ``services.conversations`` or
``services.feedback``, serialize. Another user's session is 404, as everywhere.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers as drf
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .. import validation
from ..exceptions import ChatModelError, InvalidParams
from ..services import conversations, feedback
from . import errors, serializers
from .base import ERRORS, FIELD_ERRORS, SESSION_UUID, ChatModelAPIView, _path_seq, _session, _valid, extend_schema
from .views import SessionDetailView

# --- input ---------------------------------------------------------------------------------------------


def _checked(rule: Any, value: Any) -> Any:
    """``rule(value)``, its InvalidParams as the serializer field's error."""
    try:
        return rule(value)
    except ChatModelError as exc:
        raise serializers.field_error(exc) from None


class StrictInputSerializer(serializers.InputSerializer):
    """An input serializer that refuses keys it does not know: a typo must not be ignored silently."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields) if isinstance(self.initial_data, dict) else set()
        if unknown:
            raise drf.ValidationError({key: ["Unknown field."] for key in sorted(unknown)})
        return attrs


class SessionUpdateSerializer(StrictInputSerializer):
    """``PATCH /api/sessions/<uuid>/``: rename and/or archive."""

    title = serializers.StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=validation.MAX_TITLE_CHARS,
        help_text='The new title ("" clears it). A title you set is never replaced by a generated one.',
    )
    archived = serializers.StrictBooleanField(required=False, help_text="true archives, false unarchives.")

    def validate_title(self, value: str) -> str:
        return _checked(validation.title_clean, value)


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "enum": ["up", "down"]}, {"type": "integer", "enum": [1, -1]}],
        "description": '"up" (or 1) for a thumbs up, "down" (or -1) for a thumbs down.',
    }
)
class RatingField(drf.Field):
    def to_internal_value(self, data: Any) -> int:
        return _checked(validation.feedback_rating_clean, data)

    def to_representation(self, value: Any) -> Any:
        return value


class FeedbackInSerializer(StrictInputSerializer):
    """``PUT /api/sessions/<uuid>/messages/<seq>/feedback/``."""

    rating = RatingField()
    comment = serializers.StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=validation.MAX_FEEDBACK_COMMENT_CHARS,
        default="",
        help_text="Why (optional).",
    )

    def validate_comment(self, value: str) -> str:
        return _checked(validation.feedback_comment_clean, value)


# --- output --------------------------------------------------------------------------------------------


class FeedbackDataSerializer(drf.Serializer):
    rating = drf.ChoiceField(choices=["up", "down"])
    comment = drf.CharField(allow_blank=True)
    updated_at = drf.DateTimeField()


class FeedbackSerializer(drf.Serializer):
    message_seq = drf.IntegerField()
    feedback = FeedbackDataSerializer(allow_null=True, help_text="null when none was given.")


# --- views ---------------------------------------------------------------------------------------------

SEQ = OpenApiParameter(
    "seq", int, OpenApiParameter.PATH, description="The assistant message's seq (as in its `message_seq`)."
)


class ConversationDetailView(SessionDetailView):
    """``/api/sessions/<uuid>/``: get (as before), rename or archive (PATCH), delete (DELETE)."""

    @extend_schema(
        operation_id="session_update",
        summary="Rename, archive or unarchive a session",
        parameters=[SESSION_UUID],
        request=SessionUpdateSerializer,
        responses={200: serializers.SessionSerializer, 400: FIELD_ERRORS, **ERRORS},
    )
    def patch(self, request: Request, uuid: str) -> Response:
        session = _session(request, uuid, write=True)
        data = _valid(SessionUpdateSerializer, request.data)
        session = conversations.conversation_update(session=session, **data)
        return Response(serializers.SessionSerializer(session).data)

    @extend_schema(
        operation_id="session_delete",
        summary="Delete a session with its messages, runs and feedback",
        parameters=[SESSION_UUID],
        request=None,
        responses={
            204: OpenApiResponse(description="Deleted."),
            409: OpenApiResponse(
                serializers.ErrorSerializer, description="A run is in progress: cancel it first (session_busy)."
            ),
            **ERRORS,
        },
    )
    def delete(self, request: Request, uuid: str) -> Response:
        session = _session(request, uuid, write=True)
        conversations.conversation_delete(session=session)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FeedbackView(ChatModelAPIView):
    """``/api/sessions/<uuid>/messages/<seq>/feedback/``: the session's user rates an assistant reply."""

    @extend_schema(
        operation_id="feedback_retrieve",
        summary="Get your feedback on a reply",
        parameters=[SESSION_UUID, SEQ],
        responses={200: FeedbackSerializer, 400: FIELD_ERRORS, **ERRORS},
    )
    def get(self, request: Request, uuid: str, seq: str) -> Response:
        session = _session(request, uuid, write=True)
        number = _path_seq(seq)
        found = _call(feedback.feedback_get, session=session, seq=number)
        return Response({"message_seq": number, "feedback": feedback.feedback_json(found)})

    @extend_schema(
        operation_id="feedback_set",
        summary="Give or change your feedback on a reply (thumbs up or down, optional comment)",
        parameters=[SESSION_UUID, SEQ],
        request=FeedbackInSerializer,
        responses={200: FeedbackSerializer, 400: FIELD_ERRORS, **ERRORS},
    )
    def put(self, request: Request, uuid: str, seq: str) -> Response:
        session = _session(request, uuid, write=True)
        number = _path_seq(seq)
        data = _valid(FeedbackInSerializer, request.data)
        stored = _call(feedback.feedback_set, session=session, seq=number, user=request.user, **data)
        return Response({"message_seq": number, "feedback": feedback.feedback_json(stored)})

    @extend_schema(
        operation_id="feedback_delete",
        summary="Take back your feedback on a reply",
        parameters=[SESSION_UUID, SEQ],
        request=None,
        responses={204: OpenApiResponse(description="Taken back (or there was none)."), 400: FIELD_ERRORS, **ERRORS},
    )
    def delete(self, request: Request, uuid: str, seq: str) -> Response:
        session = _session(request, uuid, write=True)
        _call(feedback.feedback_delete, session=session, seq=_path_seq(seq))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _call(fn: Any, **kwargs: Any) -> Any:
    """A service call whose InvalidParams names a field: that field's error, as the serializers give them."""
    try:
        return fn(**kwargs)
    except InvalidParams as exc:
        if exc.field:
            raise errors.FieldErrors({exc.field: [str(exc)]}, error_code=exc.code) from None
        raise
