"""What every REST view shares: the base view, the SSE renderer, session lookup and input validation."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.utils.module_loading import import_string
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from drf_spectacular.utils import extend_schema as spectacular_extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from .. import access, selectors, validation
from ..conf import conf
from ..exceptions import InvalidParams, MessageNotFound, SessionNotFound
from ..models import ChatModel, Session
from . import errors, serializers, sse

# --- shared plumbing ---------------------------------------------------------------------------------


def extend_schema(**kwargs: Any) -> Any:
    """drf-spectacular's ``extend_schema`` on drf-spectacular's AutoSchema, whatever the host's DRF defaults.

    Its decorator builds on ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` unless the method names a schema
    class, and DRF's own default would make ``api/schema/`` fail ("Incompatible AutoSchema").
    """
    decorate = spectacular_extend_schema(**kwargs)

    def decorator(method: Any) -> Any:
        method.schema = AutoSchema
        return decorate(method)

    return decorator


@lru_cache(maxsize=64)
def _import(path: str) -> Any:
    return import_string(path)


class EventStreamRenderer(BaseRenderer):
    """Lets DRF accept ``Accept: text/event-stream``; the stream itself is written by ``sse.py``."""

    media_type = sse.CONTENT_TYPE
    format = "sse"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data)


class ChatModelAPIView(APIView):
    """Base of the API views: authentication, permissions and throttles from CHATMODEL_API_* settings."""

    renderer_classes = [JSONRenderer]
    parser_classes = [errors.LimitedJSONParser]
    # Our own, not REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]: api/schema/ works whatever the host's DRF defaults.
    schema = AutoSchema()
    # Added to CHATMODEL_API_PERMISSION_CLASSES, never instead of them.
    extra_permission_classes: list[type] = []

    def get_authenticators(self) -> list[Any]:
        return [_import(path)() for path in conf.API_AUTHENTICATION_CLASSES]

    def get_permissions(self) -> list[Any]:
        classes = [_import(path) for path in conf.API_PERMISSION_CLASSES] + list(self.extra_permission_classes)
        return [cls() for cls in classes]

    def get_throttles(self) -> list[Any]:
        return [_import(path)() for path in conf.API_THROTTLE_CLASSES]

    def get_exception_handler(self) -> Any:
        return errors.exception_handler


def _session(request: Request, session_uuid: str, *, write: bool = False) -> Session:
    """The session, if this user may see it (404 as if it did not exist otherwise); 403 for staff writing."""
    session = selectors.session_get(session_uuid=session_uuid)
    rights = access.session_access(request.user, session)
    if rights is None:
        raise SessionNotFound(f"No session {session_uuid}.")
    if write and rights != "write":
        raise PermissionDenied(
            "You may read this session but not change it: it belongs to another user, or to no user (it was created "
            "without user=). Open it with the account that created it; in Python, create it with "
            "ChatModel(name, user=...) to give it an owner."
        )
    return session


def _chat_model(name: str) -> ChatModel:
    """The chat model named in the URL path; a NUL there (``%00``) is refused before any query."""
    validation.text_check(name, "name", InvalidParams)
    return selectors.chat_model_get(name=name)


def _path_seq(value: str) -> int:
    """A message's seq in the URL path: digits only, else no such message (404), as a malformed uuid is no
    session. (In a JSON body or a frame, a seq that is not an integer is refused: ``message_seq_clean``.)"""
    seq = validation.message_seq_clean(value) if value.isascii() and value.isdigit() else 0
    if not seq:
        raise MessageNotFound(f"No message {value!r}.")
    return seq


def _query(request: Request) -> dict[str, str]:
    """The query string as a plain dict: DRF reads a QueryDict like a form, where ``?limit=`` means no limit."""
    return request.query_params.dict()


def _valid(serializer_class: type[serializers.InputSerializer], data: Any, **context: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, context=context)
    if not serializer.is_valid():
        raise errors.FieldErrors(serializer.errors, error_code=serializer_class.error_code)
    return serializer.validated_data


ERRORS = {
    401: OpenApiResponse(serializers.ErrorSerializer, description="Not authenticated."),
    403: OpenApiResponse(serializers.ErrorSerializer, description="Authenticated, but not allowed."),
    404: OpenApiResponse(serializers.ErrorSerializer, description="No such object, or not yours."),
}
FIELD_ERRORS = OpenApiResponse(
    {"type": "object", "additionalProperties": {}},
    description="Field errors: each key a field (or non_field_errors), each value its messages.",
)
SESSION_UUID = OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The session's uuid.")
CHAT_MODEL_NAME = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The chat model.")
