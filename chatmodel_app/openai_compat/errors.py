"""The app's errors in OpenAI's error body, so OpenAI's SDKs raise their usual exception classes.

``{"error": {"message", "type", "param", "code"}}`` with the status the REST API gives for the same error
(``chatmodel_app.exceptions.ERROR_CODES`` through ``api.errors``): 400 ``BadRequestError``, 401
``AuthenticationError``, 403 ``PermissionDeniedError``, 404 ``NotFoundError``, 409 ``ConflictError``,
413, 429 ``RateLimitError``, 5xx ``InternalServerError``. ``code`` is the app's error code (``session_busy``,
``invalid_params``...), also in the ``Chatmodel-Error-Code`` header as on the REST API.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import status as http
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..api import errors as api_errors
from ..exceptions import ChatModelError, http_status
from ..types import LLMResponse

logger = logging.getLogger("chatmodel_app")

# OpenAI's ``type`` of an error by status; the SDKs pick their exception class by status alone.
_TYPES = {
    http.HTTP_401_UNAUTHORIZED: "authentication_error",
    http.HTTP_403_FORBIDDEN: "permission_error",
    http.HTTP_404_NOT_FOUND: "invalid_request_error",
    http.HTTP_429_TOO_MANY_REQUESTS: "rate_limit_error",
}


def error_type(status: int) -> str:
    """OpenAI's ``type`` for a status."""
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def error_body(message: str, *, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def error_response(
    message: str,
    *,
    status: int,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error as OpenAI answers it, with the app's code in the ``Chatmodel-Error-Code`` header."""
    response = Response(error_body(message, status=status, code=code, param=param), status=status, headers=headers)
    response[api_errors.ERROR_CODE_HEADER] = code or "error"
    return response


def run_error(response: LLMResponse) -> Response:
    """A failed or refused run (``LLMResponse.error``) with the REST API's status for it."""
    code = response.error_code or "error"
    return error_response(response.error_log or code, status=api_errors.run_status(response), code=code)


def _first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """The first field path and message of DRF's field errors (nested dicts and lists)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            return _first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, dict | list):
            return _first_error(first, path)
        return path, str(first)
    return path, str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The REST API's mapping to statuses, answered in OpenAI's error body."""
    view = context.get("view")
    renames: dict[str, str] = getattr(view, "param_names", {}) or {}
    if isinstance(exc, ChatModelError):
        param = renames.get(exc.field or "", exc.field)
        return error_response(str(exc), status=http_status(exc), code=exc.code, param=param)
    handled = api_errors.exception_handler(exc, context)
    if handled is None:
        # Not an error the API knows: a JSON 500 all the same, so the SDK reads it as one.
        logger.exception("chatmodel openai door: unexpected error")
        set_rollback()
        return error_response("The server failed on this request.", status=500, code="internal_error")
    data = handled.data
    code = handled.get(api_errors.ERROR_CODE_HEADER) or "error"
    if isinstance(data, dict) and "detail" in data:
        message, param = str(data["detail"]), None
    else:
        field, message = _first_error(data)
        root = field.split(".")[0]
        param = None if root in ("", "non_field_errors") else renames.get(root, root) + field[len(root) :]
        message = f"{param}: {message}" if param else message
    headers = {k: handled[k] for k in ("Retry-After", "WWW-Authenticate") if k in handled}
    return error_response(message, status=handled.status_code, code=code, param=param, headers=headers)
