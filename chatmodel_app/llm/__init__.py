"""The LLM layer: the only code that talks to litellm (imported lazily by ``_litellm``).

The rest of the app calls ``complete``/``acomplete`` for one reply, ``open_stream``/
``aopen_stream`` plus ``StreamAssembler`` for a streamed one, ``count_tokens`` and
``context_window``; failures come out as ``LLMError`` with a stable ``code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import lean, providers
from ._litellm import get_litellm, is_loaded, offline_handler
from .offline import PROVIDER as OFFLINE_PROVIDER
from .offline import estimate_tokens

__all__ = [
    "Completion",
    "LLMError",
    "StreamAssembler",
    "acomplete",
    "aopen_stream",
    "complete",
    "context_window",
    "count_tokens",
    "is_loaded",
    "is_offline",
    "known_models",
    "map_exception",
    "open_stream",
    "preload",
]


@dataclass
class Completion:
    """One reply, whether it came whole or was assembled from a stream."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, str] | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    cost: float | None = None
    model: str | None = None
    api_response: Any = None
    # False when a stream ended before the provider said it was done.
    complete: bool = True
    # The model string that answered (a fallback, when the primary failed) and the failed attempts before it.
    answered_model: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


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


def is_offline(model: str) -> bool:
    """Whether ``model`` is served by the offline demo provider."""
    return model.split("/", 1)[0] == OFFLINE_PROVIDER


_OFFLINE_CONTEXT_WINDOW = 32768


def context_window(model: str, default: int) -> int:
    """The model's max input tokens as LiteLLM knows it, else ``default``."""
    if is_offline(model):
        return _OFFLINE_CONTEXT_WINDOW
    litellm = get_litellm()
    register_model_info()
    try:
        info = litellm.get_model_info(providers.resolve(model).route)
    except Exception:  # litellm raises several unrelated types for unknown models
        return default
    return int(info.get("max_input_tokens") or info.get("max_tokens") or default)


_registered: dict[str, Any] | None = None


def register_model_info() -> None:
    """Tell LiteLLM what ``CHATMODEL_MODEL_INFO`` says of models it does not know (window, prices, tools)."""
    global _registered
    table = providers.model_info_table()
    if table == _registered:
        return
    litellm = get_litellm()
    entries = {}
    for model, info in table.items():
        route = providers.resolve(model).route
        entry = {"mode": "chat", "litellm_provider": route.split("/", 1)[0] if "/" in route else "openai", **info}
        entries[route] = entry
    if entries:
        litellm.register_model(entries)
    _registered = table


def count_tokens(
    model: str,
    *,
    text: str | None = None,
    messages: Sequence[Mapping] | None = None,
    tools: Sequence[Mapping] | None = None,
) -> int:
    """Tokens in a text, messages or tool schemas for ``model`` (an estimate for unknown models)."""
    if text is None and messages is None and tools is None:
        return 0
    if is_offline(model):
        total = estimate_tokens(text) if text is not None else 0
        for message in messages or ():
            total += 3 + estimate_tokens(json.dumps(message, default=str))
        if tools:
            total += estimate_tokens(json.dumps(list(tools)))
        return total
    litellm = get_litellm()
    try:
        if text is not None:
            return int(litellm.token_counter(model=model, text=text))
        count = 0
        if messages:
            count += int(litellm.token_counter(model=model, messages=list(messages)))
        if tools:
            count += int(litellm.token_counter(model=model, text=json.dumps(list(tools))))
        return count
    except Exception:  # a tokenizer we cannot load must not fail a run: estimate
        payload = text if text is not None else json.dumps([*(messages or ()), *(tools or ())], default=str)
        return estimate_tokens(payload)


def _prepare(request: dict[str, Any]) -> dict[str, Any]:
    """Map the model string to its LiteLLM route and server-side credentials (never from the caller)."""
    request = dict(request)
    register_model_info()
    target = providers.resolve(request.pop("model"), api_base=request.pop("api_base", None))
    request.pop("api_key", None)
    request.update(target.call_kwargs())
    if is_offline(request["model"]):
        # The offline model has no server: these would only confuse litellm's custom-provider path.
        request.pop("num_retries", None)
        request.pop("stream_options", None)
        from ..conf import conf

        offline_handler().token_delay = conf.OFFLINE_TOKEN_DELAY
    else:
        # Retries are litellm's (num_retries); the OpenAI SDK's own would multiply them.
        request.setdefault("max_retries", 0)
    return request


def _route(request: dict[str, Any]) -> tuple[dict[str, Any], lean.Plan | None]:
    """LiteLLM's kwargs for the request, and the lean call when the route allows one (see lean.py)."""
    prepared = _prepare(request)
    if is_offline(prepared["model"]) or not lean.enabled():
        return prepared, None
    return prepared, lean.plan(prepared, providers.resolve(request["model"]).api_key_env)


_routers: dict[Any, Any] = {}


def _router_call(request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """LiteLLM's Router for a request with fallbacks, and the kwargs to call it with.

    Each model string is a model group of one deployment; the Router falls back in order
    on retryable errors and reports what failed (``include_fallback_errors``).
    """
    from litellm import Router

    models = [request["model"], *[m for m in request["fallbacks"] if m != request["model"]]]
    deployments = []
    for i, model in enumerate(models):
        params = _prepare(
            {"model": model, **({"api_base": request["api_base"]} if i == 0 and request.get("api_base") else {})}
        )
        params = {k: v for k, v in params.items() if k in ("model", "api_base", "api_key")}
        deployments.append({"model_name": model, "litellm_params": params})
    key = (repr(deployments), request.get("num_retries"))
    router = _routers.get(key)
    if router is None:
        router = Router(
            model_list=deployments,
            fallbacks=[{models[0]: models[1:]}],
            num_retries=request.get("num_retries") or 0,
        )
        _routers.clear()  # one cached router per configuration in use; keys change rarely
        _routers[key] = router
    kwargs = {k: v for k, v in request.items() if k not in ("model", "fallbacks", "api_base", "api_key", "num_retries")}
    kwargs.update(model=models[0], include_fallback_errors=True)
    return router, kwargs


def _fallback_report(obj: Any, requested: str) -> tuple[str, list[dict[str, Any]]]:
    """Which model group answered and the failed attempts before it, from LiteLLM's response headers."""
    hidden = getattr(obj, "_hidden_params", None) or {}
    headers = hidden.get("additional_headers") or {}
    answered = headers.get("x-litellm-model-group") or requested
    raw = headers.get("x-litellm-fallback-errors") or "[]"
    try:
        errors = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        errors = []
    # LiteLLM lists the newest failure first; the Run records them in the order they happened.
    attempts = [
        {"error": scrub(str(e.get("message", ""))), "code": e.get("code"), "type": e.get("type")}
        for e in reversed(errors)
        if isinstance(e, dict)
    ]
    return answered, attempts


def _uses_router(request: dict[str, Any]) -> bool:
    return bool(request.get("fallbacks"))


def complete(request: dict[str, Any]) -> Completion:
    """One model call (falling back in order when the version lists fallbacks); raises LLMError."""
    litellm = get_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call(request)
            response = router.completion(**kwargs)
        else:
            prepared, plan = _route(request)
            response = lean.complete(plan) if plan else litellm.completion(**prepared)
    except Exception as exc:
        raise map_exception(_tag_secrets(exc, request_secrets(request))) from exc
    return _from_response(response, request["model"])


async def aget_litellm() -> Any:
    """litellm, imported on a worker thread the first time so the event loop never waits seconds for it."""
    if is_loaded():
        return get_litellm()
    return await asyncio.to_thread(get_litellm)


def preload() -> threading.Thread:
    """Import litellm on a background thread now (call it in asgi.py), so no request pays for it."""
    thread = threading.Thread(target=get_litellm, name="chatmodel-litellm-preload", daemon=True)
    thread.start()
    return thread


async def acomplete(request: dict[str, Any]) -> Completion:
    """One model call, natively async; raises LLMError."""
    litellm = await aget_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call(request)
            response = await router.acompletion(**kwargs)
        else:
            prepared, plan = _route(request)
            response = await lean.acomplete(plan) if plan else await litellm.acompletion(**prepared)
    except Exception as exc:
        raise map_exception(_tag_secrets(exc, request_secrets(request))) from exc
    return _from_response(response, request["model"])


def open_stream(request: dict[str, Any]) -> Any:
    """Start a streamed call; iterate the result, feeding chunks to a StreamAssembler."""
    litellm = get_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call({**request, "stream": True})
            return LiteLLMStream(router.completion(**kwargs), request_secrets(request))
        prepared, plan = _route({**request, "stream": True})
        return (
            lean.open_stream(plan) if plan else LiteLLMStream(litellm.completion(**prepared), request_secrets(request))
        )
    except Exception as exc:
        raise map_exception(_tag_secrets(exc, request_secrets(request))) from exc


async def aopen_stream(request: dict[str, Any]) -> Any:
    """Start a streamed call natively async; ``async for`` over the result."""
    litellm = await aget_litellm()
    try:
        if _uses_router(request):
            router, kwargs = _router_call({**request, "stream": True})
            return LiteLLMStream(await router.acompletion(**kwargs), request_secrets(request))
        prepared, plan = _route({**request, "stream": True})
        if plan:
            return await lean.aopen_stream(plan)
        return LiteLLMStream(await litellm.acompletion(**prepared), request_secrets(request))
    except Exception as exc:
        raise map_exception(_tag_secrets(exc, request_secrets(request))) from exc


def _clear_frames(error: BaseException | None) -> None:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__ or getattr(error, "original_exception", None)


class LiteLLMStream:
    """A stream from LiteLLM, let go of as soon as it ends, fails or is closed.

    LiteLLM 1.110's ``CustomStreamWrapper`` sits in a reference cycle with its logging object
    (``logging_obj.model_call_details["original_response"]`` is the wrapper), so the cyclic garbage
    collector frees it, and its ``__del__`` sets the trace_id/session_id ContextVars. On CPython 3.11
    the collector can run inside another ``ContextVar.set`` of the same Context (asgiref's
    ``_restore_context``), and the nested set frees the HAMT the interrupted one is copying: a SIGSEGV
    (CPython gh-148891, issue 19 item 11). Breaking the cycle when the run ends frees the wrapper by
    reference counting, outside any collection; ``_litellm`` also disarms that finalizer.
    """

    def __init__(self, inner: Any, secrets: Sequence[str] = ()) -> None:
        self.inner = inner
        self.secrets = list(secrets)
        self.received_finish_reason: Any = "unknown"
        self.intermittent_finish_reason: Any = None
        self.is_provider_stream = type(inner).__name__ == "CustomStreamWrapper"
        self._hidden_params: dict[str, Any] = {}
        self._snapshot()

    def _snapshot(self) -> None:
        inner = self.inner
        self.received_finish_reason = getattr(inner, "received_finish_reason", "unknown")
        self.intermittent_finish_reason = getattr(inner, "intermittent_finish_reason", None)
        self._hidden_params = getattr(inner, "_hidden_params", None) or {}

    def release(self, error: BaseException | None = None) -> None:
        """Record what the assembler reads, break LiteLLM's cycles, and drop the wrapper.

        A failure's traceback holds LiteLLM's frames, whose locals hold the wrapper (and the exception
        holds the traceback): those frames are cleared too, as far as they have finished running.
        """
        _clear_frames(error)
        inner = self.inner
        if inner is None:
            return
        self._snapshot()
        self.inner = None
        seen: set[int] = set()
        while inner is not None and id(inner) not in seen:
            seen.add(id(inner))
            details = getattr(getattr(inner, "logging_obj", None), "model_call_details", None)
            if isinstance(details, dict) and details.get("original_response") is inner:
                details["original_response"] = None
            inner = getattr(inner, "completion_stream", None)

    def __iter__(self) -> LiteLLMStream:
        return self

    def __next__(self) -> Any:
        if self.inner is None:
            raise StopIteration
        try:
            return next(self.inner)
        except BaseException as exc:
            self.release(exc)
            _tag_secrets(exc, self.secrets)
            raise

    def __aiter__(self) -> LiteLLMStream:
        return self

    async def __anext__(self) -> Any:
        if self.inner is None:
            raise StopAsyncIteration
        try:
            return await self.inner.__anext__()
        except BaseException as exc:
            self.release(exc)
            _tag_secrets(exc, self.secrets)
            raise

    def close(self) -> None:
        inner = self.inner
        target = getattr(inner, "completion_stream", None) or inner
        if target is not None and callable(getattr(target, "close", None)):
            target.close()
        self.release()

    async def aclose(self) -> None:
        inner = self.inner
        target = getattr(inner, "completion_stream", None) or inner
        if target is not None and callable(getattr(target, "aclose", None)):
            await target.aclose()
        self.release()


class StreamAssembler:
    """Collects a stream's chunks: gives each chunk's deltas, then the whole reply."""

    def __init__(self, stream: Any, model: str) -> None:
        self.stream = stream
        self.model = model
        self.chunks: list[Any] = []
        self.text_parts: list[str] = []
        self.saw_finish = False

    def feed(self, chunk: Any) -> tuple[str, list[dict[str, Any]]]:
        """Record a chunk; return its text delta and tool-call deltas."""
        self.chunks.append(chunk)
        choices = getattr(chunk, "choices", None) or ()
        if not choices:
            return "", []
        if getattr(choices[0], "finish_reason", None):
            self.saw_finish = True
        delta = choices[0].delta
        text = getattr(delta, "content", None) or ""
        if text:
            self.text_parts.append(text)
        tool_deltas = []
        for call in getattr(delta, "tool_calls", None) or ():
            function = getattr(call, "function", None)
            tool_deltas.append(
                {
                    "index": getattr(call, "index", 0) or 0,
                    "id": getattr(call, "id", None),
                    "name": getattr(function, "name", None),
                    "arguments": getattr(function, "arguments", None) or "",
                }
            )
        legacy = getattr(delta, "function_call", None)
        if legacy is not None:
            tool_deltas.append(
                {
                    "index": 0,
                    "id": None,
                    "name": getattr(legacy, "name", None),
                    "arguments": getattr(legacy, "arguments", None) or "",
                }
            )
        return text, tool_deltas

    @property
    def partial_text(self) -> str:
        """The text streamed so far."""
        return "".join(self.text_parts)

    def finish(self) -> Completion:
        """The assembled reply; ``complete`` is False when the provider never finished it."""
        litellm = get_litellm()
        release = getattr(self.stream, "release", None)
        if release is not None:
            release()
        # LiteLLM ends a cut stream with a finish_reason of "stop" of its own making; the
        # finish reason the provider really sent is only on the stream wrapper.
        received = getattr(self.stream, "received_finish_reason", "unknown")
        if received is None:
            received = getattr(self.stream, "intermittent_finish_reason", None)
        provider_stream = getattr(
            self.stream, "is_provider_stream", type(self.stream).__name__ == "CustomStreamWrapper"
        )
        if received is None and not provider_stream and self.saw_finish:
            # The Router wraps the provider's stream in a second wrapper that sees only finished
            # chunks; the inner one has already raised if the provider cut the stream.
            received = "stop"
        if not self.chunks:
            return Completion(content="", complete=False, model=self.model)
        try:
            build = getattr(self.stream, "build_response", None)
            built = build(self.chunks) if build is not None else litellm.stream_chunk_builder(self.chunks)
        except Exception:  # a malformed stream: keep what text there was
            return Completion(content=self.partial_text, complete=False, model=self.model)
        completion = _from_response(built, self.model, report_from=self.stream)
        completion.complete = received is not None
        return completion


def _from_response(response: Any, model: str, report_from: Any = None) -> Completion:
    choice = response.choices[0] if getattr(response, "choices", None) else None
    message = getattr(choice, "message", None)
    tool_calls = None
    raw_calls = getattr(message, "tool_calls", None)
    if raw_calls:
        tool_calls = [
            {
                "id": getattr(c, "id", None) or f"call_{i}",
                "type": "function",
                "function": {"name": c.function.name or "", "arguments": c.function.arguments or "{}"},
            }
            for i, c in enumerate(raw_calls)
        ]
    function_call = None
    raw_fc = getattr(message, "function_call", None)
    if raw_fc is not None and getattr(raw_fc, "name", None):
        function_call = {"name": raw_fc.name, "arguments": raw_fc.arguments or "{}"}
    usage = None
    raw_usage = getattr(response, "usage", None)
    if raw_usage is not None:
        usage = {
            "prompt_tokens": int(getattr(raw_usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(raw_usage, "completion_tokens", 0) or 0),
            "total_tokens": int(getattr(raw_usage, "total_tokens", 0) or 0),
        }
    answered, attempts = _fallback_report(report_from if report_from is not None else response, model)
    return Completion(
        content=getattr(message, "content", None),
        tool_calls=tool_calls,
        function_call=function_call,
        finish_reason=getattr(choice, "finish_reason", None),
        usage=usage,
        cost=_cost(response, answered),
        model=getattr(response, "model", None) or model,
        api_response=response,
        answered_model=answered,
        attempts=attempts,
    )


def _cost(response: Any, model: str) -> float | None:
    if is_offline(model):
        return 0.0
    litellm = get_litellm()
    try:
        return float(litellm.completion_cost(completion_response=response, model=providers.resolve(model).route))
    except Exception:  # no price known for this model
        return None


_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]+|(Bearer\s+)\S+|(api[_-]?key['\"=:\s]+)[^\s'\",}]+", re.I)


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


def _tag_secrets(exc: BaseException, secrets: Sequence[str]) -> BaseException:
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


_known_models: list[str] | None = None


def known_models() -> list[str]:
    """The offline demo model, then every chat model LiteLLM knows, sorted (imports litellm on first call)."""
    global _known_models
    if _known_models is None:
        from .offline import MODEL as OFFLINE_MODEL

        names = {
            name
            for name, info in get_litellm().model_cost.items()
            if isinstance(info, dict) and info.get("mode") == "chat" and name != "sample_spec"
        }
        _known_models = [OFFLINE_MODEL, *sorted(names - {OFFLINE_MODEL})]
    return list(_known_models)
