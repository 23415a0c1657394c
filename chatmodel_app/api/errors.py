"""The one place domain errors become HTTP statuses: run outcomes and exceptions alike.

Statuses come from the registry in ``chatmodel_app.exceptions``. Every error response also names its
code in the ``Chatmodel-Error-Code`` header, whatever its body: field errors keep DRF's shape
(``{"temperature": ["..."]}``), so the header is where a client reads the code the websocket and the
Python API would give for the same input.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from ..exceptions import ERROR_CODES, ChatModelError, InvalidMessages, InvalidParams, RequestTooLarge, http_status
from ..types import LLMResponse
from ..validation import json_too_deep

logger = logging.getLogger("chatmodel_app")

ERROR_CODE_HEADER = "Chatmodel-Error-Code"

# A run refused before the model was called: the caller's request (or the session's state) is at fault.
REFUSED_RUN_STATUS: dict[str, int] = {code: entry.http_status for code, entry in ERROR_CODES.items()}
# A run whose model call failed: upstream trouble, so a gateway status (proxies and clients retry on these).
UPSTREAM_STATUS = status.HTTP_502_BAD_GATEWAY
UPSTREAM_TIMEOUT_STATUS = status.HTTP_504_GATEWAY_TIMEOUT
# Failures of this server itself, whether before or after the model call.
SERVER_ERROR_CODES = frozenset(code for code, entry in ERROR_CODES.items() if entry.http_status == 500)
# The database (not this code, not the model) failed: a passing outage, so 503, which clients and proxies retry.
STORAGE_ERROR_CODE = "database_error"
STORAGE_STATUS = status.HTTP_503_SERVICE_UNAVAILABLE


class FieldErrors(exceptions.ValidationError):
    """An input serializer's field errors, with the registry code of the input they refuse."""

    def __init__(self, detail: Any, *, error_code: str) -> None:
        super().__init__(detail)
        self.error_code = error_code


def run_status(response: LLMResponse) -> int:
    """The HTTP status of a run's ``LLMResponse`` (documented in the README's REST API section)."""
    if not response.error:
        return status.HTTP_200_OK
    code = response.error_code or ""
    if code == STORAGE_ERROR_CODE:
        return STORAGE_STATUS
    if code in SERVER_ERROR_CODES:
        return status.HTTP_500_INTERNAL_SERVER_ERROR
    if response.run_uuid is None:
        # No run record: the pipeline refused the request before calling the model.
        return http_status(code)
    if code == "timeout":
        return UPSTREAM_TIMEOUT_STATUS
    return UPSTREAM_STATUS


def run_body(response: LLMResponse) -> dict[str, Any]:
    """The JSON body of a run: the ``LLMResponse`` fields, as the Python API has them."""
    return LLMResponse.to_dict(response)


def run_response(response: LLMResponse) -> Response:
    """A run's ``LLMResponse`` as an HTTP response: its fields, its status, and its code in the header."""
    headers = {ERROR_CODE_HEADER: response.error_code or "error"} if response.error else None
    return Response(run_body(response), status=run_status(response), headers=headers)


def exception_status(exc: ChatModelError) -> int:
    """The HTTP status of a domain exception raised outside a run."""
    return http_status(exc)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(data: Any) -> Any:
    """``data`` with every lone surrogate replaced by U+FFFD: an error that quotes a caller's bad text
    (DRF's "not a valid choice", say) must still encode as UTF-8, or the 400 would become a 500."""
    if isinstance(data, str):
        if not _LONE_SURROGATE.search(data):
            return data
        text = _LONE_SURROGATE.sub("\ufffd", data)
        return exceptions.ErrorDetail(text, code=data.code) if isinstance(data, exceptions.ErrorDetail) else text
    if isinstance(data, dict):
        return {_encodable(key): _encodable(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_encodable(item) for item in data]
    return data


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler of the API views: domain errors by the registry, DRF's own as DRF does."""
    response = _exception_response(exc, context)
    if response is not None:
        response.data = _encodable(response.data)
    return response


def _exception_response(exc: Exception, context: dict[str, Any]) -> Response | None:
    code: str | None = None
    if isinstance(exc, RequestDataTooBig):
        # Django itself refuses the body first on some versions (6.x with DRF 3.18 reads request.body).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = RequestTooLarge(f"The request body is larger than {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE).")
    if isinstance(exc, InvalidMessages | InvalidParams):
        code = exc.code
        field = "messages" if isinstance(exc, InvalidMessages) else "non_field_errors"
        exc = exceptions.ValidationError({field: [exceptions.ErrorDetail(str(exc), code=exc.code)]})
    elif isinstance(exc, ChatModelError):
        response = Response({"detail": str(exc), "code": exc.code}, status=exception_status(exc))
        response[ERROR_CODE_HEADER] = exc.code
        return response
    elif isinstance(exc, FieldErrors):
        code = exc.error_code
    elif isinstance(exc, DatabaseError):
        # JSON like every other error of the API, not Django's HTML 500 page.
        logger.exception("chatmodel api: database error")
        set_rollback()
        body = {"detail": "The database is unavailable; try again shortly.", "code": STORAGE_ERROR_CODE}
        return Response(body, status=STORAGE_STATUS, headers={ERROR_CODE_HEADER: STORAGE_ERROR_CODE})
    handled = drf_exception_handler(exc, context)
    if handled is None:
        return None
    response = handled
    if response.status_code == status.HTTP_400_BAD_REQUEST and code is not None:
        response.status_code = http_status(code)
    if isinstance(response.data, dict) and set(response.data) == {"detail"}:
        # Every error with a ``detail`` also says which one it is, as domain errors do.
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
        code = code or response.data["code"]
    response[ERROR_CODE_HEADER] = code or "error"
    return response


# Deeper bodies are refused as unparseable before any field is read (the fields' own limit is MAX_JSON_DEPTH).
MAX_BODY_DEPTH = 512


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies over Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413).

    DRF reads the request stream itself, so Django's own limit never applies to API bodies.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and stream is not None:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise RequestTooLarge(
                    f"The request body is larger than {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE).", field="body"
                )
            stream = io.BytesIO(body)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The JSON decoder gives up on deep nesting with RecursionError, which is not a ValueError (to 3.12).
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None
        if json_too_deep(data, MAX_BODY_DEPTH):
            # Python 3.13's decoder parses any depth: the same answer as on earlier Pythons.
            raise exceptions.ParseError("JSON parse error - nested too deeply.")
        return data
