"""Domain exceptions; every front door maps them to its own error shape in one place."""

from __future__ import annotations


class ChatModelError(Exception):
    """Base class of the app's errors; ``code`` is stable and machine readable."""

    code = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ChatModelNotFound(ChatModelError):
    code = "chat_model_not_found"


class VersionNotFound(ChatModelError):
    code = "version_not_found"


class SessionNotFound(ChatModelError):
    code = "session_not_found"


class SessionBusy(ChatModelError):
    code = "session_busy"


class InvalidMessages(ChatModelError, ValueError):
    code = "invalid_messages"


class InvalidParams(ChatModelError, ValueError):
    code = "invalid_params"


class ContextTooLong(ChatModelError):
    code = "context_window_exceeded"


class RemoteError(ChatModelError):
    """The remote deployment refused a request or could not be reached (HTTP transport)."""

    code = "remote_error"
