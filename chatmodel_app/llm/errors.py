"""Failed model calls: ``LLMError`` with a stable code, mapped from any exception, with every credential scrubbed."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import providers
from ._litellm import get_litellm


@dataclass
class LLMError(Exception):
    """A failed model call, with a stable ``code`` and a message a person can act on."""

    code: str
    message: str
    status_code: int | None = None
    retryable: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


# A value after "api_key" is taken for a key when it looks like one (8 or more characters, a digit among them), so
# the words of a message such as "set OPENAI_API_KEY in the environment" stay as they are.
_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]+|(Bearer\s+)\S+|(api[_-]?key['\"=:\s]+)(?=[^\s'\",}]*\d)[^\s'\",}]{8,}", re.I
)


def scrub(text: str, extra: Sequence[str] = ()) -> str:
    """Remove every credential value the server holds (and ``extra``), and anything that looks like a key.

    Replacement is by value, so a key is gone whatever the provider's wording around it.
    """
    for secret in sorted({*providers.secret_values(), *(s for s in extra if s and len(s) >= 4)}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + "***", text)


_SECRET_PARAM = re.compile(r"(api[_-]?key|token|secret|password|credential|authorization)", re.I)


def request_secrets(request: Mapping[str, Any]) -> list[str]:
    """The values of a request's key-like params (``api_key``, ``extra_headers.Authorization``, ...)."""
    found: list[str] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, str) and _SECRET_PARAM.search(key):
            found.append(value)
            found.extend(value.split()[1:])  # "Bearer <key>": the key alone, too

    for key, value in request.items():
        if key != "messages":
            walk(value, str(key))
    return found


def tag_secrets(exc: BaseException, secrets: Sequence[str]) -> BaseException:
    """Remember a request's own secrets on its exception, for ``map_exception`` to scrub."""
    if secrets:
        with contextlib.suppress(AttributeError, TypeError):
            exc._chatmodel_secrets = list(secrets)  # type: ignore[attr-defined]
    return exc


def _provider_text(exc: BaseException, extra: Sequence[str] = ()) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = re.sub(r"^(litellm\.)?\w+Error:\s*", "", str(text))
    text = re.sub(r"^(litellm\.)?\w+Error:\s*", "", text)
    return scrub(text, extra)[:2000]


def _is_missing_key(lowered: str) -> bool:
    markers = ("missing credentials", "api_key client option must be set", "no api key: set")
    return any(m in lowered for m in markers)


def _is_json_error(lowered: str) -> bool:
    markers = ("expecting value", "expecting property name", "jsondecodeerror", "invalid json", "unterminated string")
    return any(m in lowered for m in markers)


def map_exception(exc: BaseException) -> LLMError:
    """Turn any exception from a model call into an LLMError, by class and status code."""
    if isinstance(exc, LLMError):
        return exc
    from django.db import DatabaseError

    # The exception and what it wraps: the SDKs hide the transport's own error behind "Connection error.".
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if any(isinstance(e, DatabaseError) for e in chain):
        # Our storage failed during the call (a heartbeat, a snapshot), not the model.
        return LLMError("database_error", f"The database failed during the run ({type(exc).__name__}: {exc})")
    litellm = get_litellm()
    from litellm.exceptions import MidStreamFallbackError

    extra = getattr(exc, "_chatmodel_secrets", ())
    if isinstance(exc, MidStreamFallbackError):
        # LiteLLM's wrapper for a stream that broke after it began (cut connection, malformed chunk).
        original = getattr(exc, "original_exception", None) or exc
        detail = _provider_text(original, extra)
        if _is_json_error(detail.lower()):
            return LLMError("malformed_response", f"The provider sent a malformed stream chunk ({detail})", 502)
        return LLMError("stream_cut", f"The model's stream was cut before it finished ({detail})", 502, True)
    detail = _provider_text(exc, extra)
    status = getattr(exc, "status_code", None)
    if _is_missing_key(detail.lower()):
        # The openai SDK refuses to start without a key, and LiteLLM calls that an InternalServerError.
        return LLMError(
            "authentication",
            f"The provider needs an API key: set the provider's key in the server's environment. ({detail})",
            401,
        )
    # Order matters: subclasses before their bases.
    table: list[tuple[type[BaseException], str, str, bool]] = [
        (
            litellm.ContextWindowExceededError,
            "context_window_exceeded",
            "The conversation is longer than the model's context window.",
            False,
        ),
        (litellm.ContentPolicyViolationError, "content_policy", "The provider refused the content.", False),
        (
            litellm.AuthenticationError,
            "authentication",
            "The provider rejected the API key: set the provider's key in the server's environment.",
            False,
        ),
        (litellm.PermissionDeniedError, "permission_denied", "The provider denied access to this model.", False),
        (litellm.NotFoundError, "model_not_found", "The provider does not know this model.", False),
        (litellm.RateLimitError, "rate_limit", "The provider's rate limit was hit; try again shortly.", True),
        (litellm.Timeout, "timeout", "The model did not answer within the timeout.", True),
        (litellm.BadRequestError, "bad_request", "The provider rejected the request.", False),
        (litellm.ServiceUnavailableError, "provider_unavailable", "The provider is unavailable.", True),
    ]
    for cls, code, summary, retryable in table:
        if isinstance(exc, cls):
            return LLMError(code, f"{summary} ({type(exc).__name__}: {detail})", status, retryable)
    lowered = detail.lower()
    if any(type(e).__name__ in ("RemoteProtocolError", "ReadError", "IncompleteRead") for e in chain):
        # The server was reached and began its reply, then the connection broke: a cut, not a refused connection.
        return LLMError("stream_cut", f"The model's reply was cut before it finished ({detail})", status, True)
    if (
        "connection error" in lowered
        or "connection refused" in lowered
        or "connecterror" in lowered
        or "connect call failed" in lowered
        or (isinstance(exc, litellm.APIConnectionError) and "connect" in lowered)
    ):
        return LLMError("connection_error", f"Could not connect to the model's server ({detail})", status, True)
    if isinstance(exc, litellm.InternalServerError | litellm.APIConnectionError | litellm.APIError):
        if _is_json_error(lowered):
            return LLMError("malformed_response", f"The provider sent a malformed response ({detail})", status)
        if "remoteprotocolerror" in lowered or "stream ended" in lowered or "incomplete chunked" in lowered:
            return LLMError("stream_cut", f"The model's stream was cut before it finished ({detail})", status, True)
        return LLMError("provider_error", f"The provider failed ({type(exc).__name__}: {detail})", status, True)
    if isinstance(exc, json.JSONDecodeError | ValueError) and "json" in lowered:
        return LLMError("malformed_response", f"The provider sent a malformed response ({detail})", status, False)
    return LLMError("unknown", f"The model call failed ({type(exc).__name__}: {detail})", status, False)
