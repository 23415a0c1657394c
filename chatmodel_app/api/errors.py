"""The one place domain errors become HTTP statuses: run outcomes and exceptions alike."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..exceptions import (
    ChatModelError,
    ChatModelNotFound,
    ContextTooLong,
    InvalidMessages,
    InvalidParams,
    SessionBusy,
    SessionNotFound,
    VersionNotFound,
)
from ..types import LLMResponse

# A run refused before the model was called: the caller's request (or the session's state) is at fault.
REFUSED_RUN_STATUS: dict[str, int] = {
    "invalid_params": status.HTTP_400_BAD_REQUEST,
    "invalid_messages": status.HTTP_400_BAD_REQUEST,
    "context_window_exceeded": status.HTTP_400_BAD_REQUEST,
    "session_busy": status.HTTP_409_CONFLICT,
    "session_not_found": status.HTTP_404_NOT_FOUND,
    "chat_model_not_found": status.HTTP_404_NOT_FOUND,
    "version_not_found": status.HTTP_404_NOT_FOUND,
}
# A run whose model call failed: upstream trouble, so a gateway status (proxies and clients retry on these).
UPSTREAM_STATUS = status.HTTP_502_BAD_GATEWAY
UPSTREAM_TIMEOUT_STATUS = status.HTTP_504_GATEWAY_TIMEOUT
# Failures of this server itself, whether before or after the model call.
SERVER_ERROR_CODES = frozenset({"database_error", "internal_error", "lease_lost"})

EXCEPTION_STATUS: tuple[tuple[type[ChatModelError], int], ...] = (
    (ChatModelNotFound, status.HTTP_404_NOT_FOUND),
    (SessionNotFound, status.HTTP_404_NOT_FOUND),
    (VersionNotFound, status.HTTP_404_NOT_FOUND),
    (SessionBusy, status.HTTP_409_CONFLICT),
    (ContextTooLong, status.HTTP_400_BAD_REQUEST),
    (InvalidMessages, status.HTTP_400_BAD_REQUEST),
    (InvalidParams, status.HTTP_400_BAD_REQUEST),
)


def run_status(response: LLMResponse) -> int:
    """The HTTP status of a run's ``LLMResponse`` (documented in the README's REST API section)."""
    if not response.error:
        return status.HTTP_200_OK
    code = response.error_code or ""
    if code in SERVER_ERROR_CODES:
        return status.HTTP_500_INTERNAL_SERVER_ERROR
    if response.run_uuid is None:
        # No run record: the pipeline refused the request before calling the model.
        return REFUSED_RUN_STATUS.get(code, status.HTTP_400_BAD_REQUEST)
    if code == "timeout":
        return UPSTREAM_TIMEOUT_STATUS
    return UPSTREAM_STATUS


def run_body(response: LLMResponse) -> dict[str, Any]:
    """The JSON body of a run: the ``LLMResponse`` fields, as the Python API has them."""
    return LLMResponse.to_dict(response)


def exception_status(exc: ChatModelError) -> int:
    """The HTTP status of a domain exception raised outside a run."""
    for cls, code in EXCEPTION_STATUS:
        if isinstance(exc, cls):
            return code
    return REFUSED_RUN_STATUS.get(exc.code, status.HTTP_400_BAD_REQUEST)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler of the API views: domain errors by ``exception_status``, DRF's own as DRF does."""
    if isinstance(exc, InvalidMessages):
        exc = exceptions.ValidationError({"messages": [exceptions.ErrorDetail(str(exc), code=exc.code)]})
    elif isinstance(exc, InvalidParams):
        exc = exceptions.ValidationError({"non_field_errors": [exceptions.ErrorDetail(str(exc), code=exc.code)]})
    elif isinstance(exc, ChatModelError):
        return Response({"detail": str(exc), "code": exc.code}, status=exception_status(exc))
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        # Every error with a ``detail`` also says which one it is, as domain errors do.
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
    return response
