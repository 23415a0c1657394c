"""Domain exceptions and the one registry of error codes every front door maps from.

A door tells errors apart by their type or ``code``, never by their wording: REST takes its HTTP
status from ``http_status``, the websocket puts ``code`` in its ``error`` frames, and the HTTP
transport of the ``ChatModel`` shim turns a code back into its exception with ``exception_for_code``.
"""

from __future__ import annotations

from dataclasses import dataclass


class ChatModelError(Exception):
    """Base class of the app's errors; ``code`` is stable and machine readable.

    ``field`` names the request field at fault when there is one (``"tools"``, ``"temperature"``),
    so a door can attach the message to it.
    """

    code = "error"

    def __init__(self, message: str = "", *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code
        self.field = field

    @property
    def message(self) -> str:
        return str(self)


class ChatModelNotFound(ChatModelError):
    code = "chat_model_not_found"


class VersionNotFound(ChatModelError):
    code = "version_not_found"


class SessionNotFound(ChatModelError):
    code = "session_not_found"


class SessionOfOtherChatModel(SessionNotFound):
    """The uuid names a session of another chat model: never reused, never created again."""


class MessageNotFound(ChatModelError):
    """No message with this seq in the session (feedback names a message by its seq)."""

    code = "message_not_found"


class SessionBusy(ChatModelError):
    code = "session_busy"


class InvalidMessages(ChatModelError, ValueError):
    code = "invalid_messages"


class InvalidParams(ChatModelError, ValueError):
    code = "invalid_params"


class RequestTooLarge(ChatModelError, ValueError):
    """A request body over the size limit (``DATA_UPLOAD_MAX_MEMORY_SIZE``); parts of one are ``Invalid*``."""

    code = "request_too_large"


class ContextTooLong(ChatModelError):
    code = "context_window_exceeded"


class RemoteError(ChatModelError):
    """The remote deployment refused a request or could not be reached (HTTP transport)."""

    code = "remote_error"


@dataclass(frozen=True)
class ErrorCode:
    """One entry of the registry: the exception a code raises (None: a door's own), its HTTP status, its meaning."""

    code: str
    exception: type[ChatModelError] | None
    http_status: int
    meaning: str


# Every code a caller can get before (or instead of) a model reply. Run failures after the model was
# called (``timeout``, ``rate_limit``, ...) are ``LLMResponse.error_code`` values, not exceptions: see llm/.
ERROR_CODES: dict[str, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode("chat_model_not_found", ChatModelNotFound, 404, "No chat model has this name."),
        ErrorCode("version_not_found", VersionNotFound, 404, "The chat model has no such (or no published) version."),
        ErrorCode("session_not_found", SessionNotFound, 404, "No session with this uuid that the caller may see."),
        ErrorCode("session_busy", SessionBusy, 409, "A run is already in progress on this session."),
        ErrorCode("message_not_found", MessageNotFound, 404, "The session has no message with this seq."),
        ErrorCode("invalid_messages", InvalidMessages, 400, "The messages break a rule (role, content, size, ...)."),
        ErrorCode("no_messages", InvalidMessages, 400, "The session has no messages to answer: add one before run()."),
        ErrorCode("invalid_params", InvalidParams, 400, "A parameter, function or tool schema is not accepted."),
        ErrorCode("request_too_large", RequestTooLarge, 413, "The request body is over the size limit."),
        ErrorCode("context_window_exceeded", ContextTooLong, 400, "The conversation does not fit the model."),
        ErrorCode("version_in_use", ChatModelError, 409, "The version has served sessions, so it is read-only."),
        ErrorCode("remote_error", RemoteError, 502, "The remote deployment refused or could not be reached."),
        # Failures of the server itself (also run error codes: LLMResponse.error_code).
        ErrorCode("internal_error", None, 500, "The server failed on this request."),
        ErrorCode("database_error", None, 503, "The database failed; nothing was lost that was stored. Retry later."),
        ErrorCode("throttled", None, 429, "Too many runs: the same limit on REST and the websocket; retry later."),
        ErrorCode("lease_lost", None, 500, "The run lost its claim on the session to another worker."),
        # Door-level codes: REST.
        ErrorCode("session_exists", None, 409, "A session with this uuid already exists."),
        # Door-level codes: websocket error frames (the socket stays open).
        ErrorCode("rate_limited", None, 429, "Too many frames; retry_after says when to send again."),
        ErrorCode("frame_too_large", None, 413, "A frame over CHATMODEL_WS_MAX_FRAME_BYTES."),
        ErrorCode("invalid_frame", None, 400, "Not a JSON object in a text frame."),
        ErrorCode("invalid_json", None, 400, "The frame is not JSON."),
        ErrorCode("unknown_type", None, 400, "The frame's type is not add_messages, run, cancel or ping."),
        ErrorCode("forbidden", None, 403, "You may read this session but not change it."),
        ErrorCode("no_active_run", None, 409, "Cancel found no run in progress."),
    )
}


def http_status(exc_or_code: ChatModelError | str, default: int = 400) -> int:
    """The HTTP status of an error (by its code, else by its type), ``default`` for unknown codes."""
    if isinstance(exc_or_code, str):
        entry = ERROR_CODES.get(exc_or_code)
        return entry.http_status if entry else default
    entry = ERROR_CODES.get(exc_or_code.code)
    if entry is not None:
        return entry.http_status
    for entry in ERROR_CODES.values():
        if entry.exception not in (None, ChatModelError) and isinstance(exc_or_code, entry.exception):
            return entry.http_status
    return default


def exception_for_code(code: str) -> type[ChatModelError] | None:
    """The exception class of an error code (as a remote server sent it), or None if the code is unknown."""
    entry = ERROR_CODES.get(code)
    return entry.exception if entry else None
