"""The lean client: OpenAI-compatible routes called with httpx and ``json.loads``, beneath LiteLLM.

LiteLLM's ``acompletion`` costs about 16 ms of CPU per streamed call and 380 µs per chunk (its logging
object, stream wrapper and pydantic chunks); this path costs about what raw httpx does. LiteLLM stays
the provider layer: it resolves the route, builds the ``ModelResponse`` (so costs come from its tables)
and maps every error, which is first shaped exactly as the ``openai`` SDK under LiteLLM would raise it.

A request takes this path only when LiteLLM would send it unchanged to an OpenAI-compatible server:
an ``openai/<model>`` route with an ``api_base``, a model LiteLLM's generic OpenAI config serves (not
an o-series or gpt-5 model it rewrites), plain chat-completions params, no fallbacks (the Router) and
no LiteLLM callbacks registered by the host. Everything else goes through LiteLLM as before.

Retries repeat LiteLLM's count (measured against the fake server in ``chatmodel_app.testing``): the
first call lets the SDK retry retryable errors (429, 408, 409, 5xx, timeouts, connection errors)
``num_retries`` times with its backoff, then ``completion_with_retries`` makes ``num_retries`` more
attempts for any error. So a call makes up to 2N+1 attempts for a retryable error and N+1 for any
other; a stream is never retried once it has begun.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import httpx

from ._litellm import get_litellm

# Chat-completions params sent as they are (LiteLLM's generic OpenAI config passes these through).
BODY_PARAMS = frozenset(
    {
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "seed",
        "n",
        "response_format",
        "user",
        "logit_bias",
        "logprobs",
        "top_logprobs",
    }
)
# Keys of the request that steer the call, not the body.
_CALL_PARAMS = frozenset({"model", "api_base", "api_key", "timeout", "num_retries", "max_retries"})
_HOST_CALLBACKS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


class Plan:
    """One call of the lean path: where, with which key, what body."""

    __slots__ = ("body", "key", "key_env", "model", "num_retries", "route", "timeout", "url")

    def __init__(self, prepared: dict[str, Any], key: str | None, key_env: str, supported: frozenset[str]) -> None:
        self.route = prepared["model"]
        self.model = self.route.split("/", 1)[1]
        self.url = prepared["api_base"].rstrip("/") + "/chat/completions"
        self.key = key
        self.key_env = key_env
        self.timeout = httpx.Timeout(float(prepared.get("timeout") or 600.0))
        self.num_retries = int(prepared.get("num_retries") or 0)
        # LiteLLM leaves unset (None) params out of the body, and drops those the model does not take (drop_params).
        sent = BODY_PARAMS & supported
        self.body = {"model": self.model, **{k: v for k, v in prepared.items() if k in sent and v is not None}}

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


def enabled() -> bool:
    from ..conf import conf

    return conf.LEAN_CLIENT


@functools.lru_cache(maxsize=512)
def supported_params(model: str) -> frozenset[str] | None:
    """The params LiteLLM sends for ``openai/<model>`` (it drops the rest), or None when it rewrites the request.

    Its generic config serves the models it knows (OpenAIGPTConfig) and the names an OpenAI-compatible
    server gives (OpenAIUnknownModelConfig); o-series, gpt-5 and the like get configs that rewrite params.
    """
    litellm = get_litellm()
    from litellm.llms.openai.chat.gpt_transformation import OpenAIGPTConfig, OpenAIUnknownModelConfig
    from litellm.types.utils import LlmProviders

    try:
        config = litellm.ProviderConfigManager.get_provider_chat_config(model=model, provider=LlmProviders.OPENAI)
        if type(config) not in (OpenAIGPTConfig, OpenAIUnknownModelConfig):
            return None
        return frozenset(config.get_supported_openai_params(model)) | {"messages", "stream", "stream_options"}
    except Exception:  # an unknown shape of model name: let LiteLLM handle it
        return None


def plan(prepared: dict[str, Any], profile_key_env: str | None = None) -> Plan | None:
    """The lean call for a prepared request (``_prepare``'s output), or None when LiteLLM must make it."""
    route = prepared.get("model") or ""
    if not route.startswith("openai/") or not prepared.get("api_base"):
        return None
    if any(k not in BODY_PARAMS and k not in _CALL_PARAMS for k in prepared):
        return None
    litellm = get_litellm()
    if any(getattr(litellm, name, None) for name in _HOST_CALLBACKS):
        return None  # the host logs calls through LiteLLM: keep them visible there
    supported = supported_params(route.split("/", 1)[1])
    if supported is None:
        return None
    # The key LiteLLM's OpenAI route would use, in its order.
    key = prepared.get("api_key") or litellm.api_key or litellm.openai_key or os.environ.get("OPENAI_API_KEY")
    return Plan(prepared, key or None, profile_key_env or "OPENAI_API_KEY", supported)


# --- errors, shaped as the openai SDK raises them, mapped by LiteLLM --------------------------------


class Failure(Exception):
    """A failed attempt: the LiteLLM exception it maps to, whether the SDK would retry it, and its headers."""

    def __init__(self, error: Exception, retryable: bool, headers: Any = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.headers = headers


@functools.lru_cache(maxsize=1)
def _sdk() -> Any:
    """An idle SDK client, used only for its error and retry rules (it never sends a request)."""
    import openai

    return openai.OpenAI(api_key="unused", base_url="http://127.0.0.1/v1", max_retries=0)


def _litellm_error(sdk_error: Exception, model: str) -> Exception:
    """What LiteLLM raises for this SDK error (the same wrapping as its OpenAI handler, then its mapping)."""
    from litellm.litellm_core_utils.exception_mapping_utils import exception_type
    from litellm.llms.openai.common_utils import OpenAIError

    headers = getattr(sdk_error, "headers", None)
    response = getattr(sdk_error, "response", None)
    if headers is None and response is not None:
        headers = getattr(response, "headers", None)
    wrapped = OpenAIError(
        status_code=getattr(sdk_error, "status_code", 500),
        message=getattr(sdk_error, "text", str(sdk_error)),
        headers=headers,
        body=getattr(sdk_error, "body", None),
    )
    try:
        exception_type(model=model, custom_llm_provider="openai", original_exception=wrapped)
    except Exception as mapped:
        return mapped
    return wrapped  # pragma: no cover - exception_type always raises


def status_failure(response: httpx.Response, model: str) -> Failure:
    """A non-2xx answer (its body already read)."""
    sdk = _sdk()
    error = sdk._make_status_error_from_response(response)
    return Failure(_litellm_error(error, model), sdk._should_retry(response), response.headers)


def transport_failure(exc: Exception, request: httpx.Request, model: str) -> Failure:
    """A timeout, refused or cut connection: the SDK's APITimeoutError / APIConnectionError, both retried."""
    import openai

    # openai 3 types this as an httpx2 Request; the error only keeps it, for whoever reads ``error.request``.
    sdk_request: Any = request
    if isinstance(exc, httpx.TimeoutException):
        error: Exception = openai.APITimeoutError(request=sdk_request)
    else:
        error = openai.APIConnectionError(request=sdk_request)
    return Failure(_litellm_error(error, model), True)


def malformed_failure(exc: ValueError, model: str) -> Failure:
    """A 200 whose body is not JSON; the SDK does not retry it."""
    import openai

    return Failure(_litellm_error(openai.OpenAIError(f"error - {exc}"), model), False)


def missing_key_error(plan: Plan) -> Exception:
    import litellm

    return litellm.AuthenticationError(
        message=f"No API key: set {plan.key_env} in the server's environment.",
        llm_provider="openai",
        model=plan.model,
    )


def mid_stream_error(exc: Exception, request: httpx.Request | None, plan: Plan) -> Exception:
    """LiteLLM's error for a stream that broke after it began (a cut connection, a malformed chunk)."""
    from litellm.exceptions import MidStreamFallbackError

    if isinstance(exc, ValueError | Unfinished):
        original = _litellm_error(Exception(str(exc)), plan.model)
    else:
        original = transport_failure(exc, request or httpx.Request("POST", plan.url), plan.model).error
    return MidStreamFallbackError(
        message=str(original), model=plan.model, llm_provider="openai", original_exception=original
    )


class Unfinished(Exception):
    """A stream that ended cleanly without a finish_reason: LiteLLM fails it as a cut stream, and so do we."""

    def __init__(self) -> None:
        super().__init__("Stream ended before a finish_reason was received")


def backoff(retry: int, headers: Any) -> float:
    """The SDK's wait before its ``retry``-th retry: the server's Retry-After, else 0.5 s doubling, jittered."""
    from openai._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER_DELAY, MAX_RETRY_DELAY

    if headers is not None:
        after = _sdk()._parse_retry_after_header(headers)
        if after is not None and 0 < after <= MAX_RETRY_AFTER_DELAY:
            return float(after)
    return min(INITIAL_RETRY_DELAY * 2.0**retry, MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


def _schedule(plan: Plan, failures: list[Failure], is_async: bool) -> float | None:
    """Seconds to wait before the next attempt after ``failures``, or None when LiteLLM would give up."""
    n = plan.num_retries
    done = len(failures)
    last = failures[-1]
    # Phase 1: the SDK's own retries (max_retries = num_retries), retryable errors only.
    first = 0
    while first < len(failures) and failures[first].retryable and first < n:
        first += 1
    phase1 = first + 1  # attempts phase 1 made (it stops at the first non-retryable error or after n retries)
    if done < phase1:
        return backoff(done - 1, last.headers)
    # Phase 2: completion_with_retries, n more attempts for any error; constant, but exponential (1, 2, 4 s, at
    # most 10) in acompletion when the error that ended phase 1 was a rate limit.
    if done >= phase1 + n:
        return None
    if not is_async or done == phase1:
        return 0.0
    import openai

    if isinstance(failures[phase1 - 1].error, openai.RateLimitError):
        return float(min(10, 2 ** (done - phase1 - 1)))
    return 0.0


def run_sync(plan: Plan, attempt: Callable[[], Any]) -> Any:
    """Call ``attempt`` on LiteLLM's retry schedule; raise the last error's LiteLLM exception."""
    failures: list[Failure] = []
    while True:
        try:
            return attempt()
        except Failure as failure:
            failures.append(failure)
        wait = _schedule(plan, failures, is_async=False)
        if wait is None:
            raise failures[-1].error
        if wait:
            time.sleep(wait)


async def run_async(plan: Plan, attempt: Callable[[], Any]) -> Any:
    failures: list[Failure] = []
    while True:
        try:
            return await attempt()
        except Failure as failure:
            failures.append(failure)
        wait = _schedule(plan, failures, is_async=True)
        if wait is None:
            raise failures[-1].error
        if wait:
            await asyncio.sleep(wait)


# --- responses and chunks ----------------------------------------------------------------------------


class Obj(dict):
    """A parsed JSON object that also reads as attributes (``chunk.choices[0].delta.content``), like the SDK's."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            return None  # an absent field reads as None, as on the SDK's models

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return json.loads(json.dumps(self))


def loads(data: bytes | str) -> Any:
    return json.loads(data, object_hook=Obj)


def model_response(data: dict[str, Any], headers: Any = None) -> Any:
    """LiteLLM's ModelResponse of a chat-completions JSON, built as its OpenAI handler builds it."""
    from litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response import (
        convert_to_model_response_object,
    )
    from litellm.types.utils import ModelResponse

    return convert_to_model_response_object(
        response_object=json.loads(json.dumps(data)),
        model_response_object=ModelResponse(),
        _response_headers=dict(headers) if headers is not None else None,
    )


def assemble(chunks: list[Any]) -> dict[str, Any]:
    """One chat-completions JSON from a stream's chunks (text, tool calls, legacy function call, usage)."""
    first = next((c for c in chunks if c.get("id")), chunks[0] if chunks else Obj())
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    function_call: dict[str, str] | None = None
    finish = None
    usage = None
    role = "assistant"
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            role = delta.get("role") or role
            if delta.get("content"):
                text.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                entry = calls.setdefault(
                    call.get("index") or 0, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                entry["id"] = call.get("id") or entry["id"]
                function = call.get("function") or {}
                entry["function"]["name"] += function.get("name") or ""
                entry["function"]["arguments"] += function.get("arguments") or ""
            if delta.get("function_call"):
                function_call = function_call or {"name": "", "arguments": ""}
                function_call["name"] += delta["function_call"].get("name") or ""
                function_call["arguments"] += delta["function_call"].get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": role, "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    if function_call is not None:
        message["function_call"] = function_call
    data = {
        "id": first.get("id") or "chatcmpl-lean",
        "object": "chat.completion",
        "created": first.get("created") or int(time.time()),
        "model": first.get("model"),
        "system_fingerprint": first.get("system_fingerprint"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
    }
    if usage is not None:
        data["usage"] = usage
    return data


class _SSE:
    """Server-sent events to chunks: ``data:`` lines until ``[DONE]``; comments and other fields skipped."""

    __slots__ = ("closed", "done", "received_finish_reason")

    def __init__(self) -> None:
        self.done = False
        self.closed = False
        self.received_finish_reason: str | None = None

    def parse(self, line: str) -> Any:
        # After [DONE] the body is still read to its end, so the connection goes back to the pool.
        if self.done or not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        chunk = loads(data)  # a malformed chunk raises ValueError: the stream breaks, as under LiteLLM
        if isinstance(chunk, dict) and chunk.get("error") and not chunk.get("choices"):
            raise ValueError(f"the provider sent an error mid-stream: {json.dumps(chunk['error'])[:500]}")
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.received_finish_reason = choice["finish_reason"]
        return chunk


class Stream(_SSE):
    """A streamed reply read with httpx; iterate it, then ``build_response`` the chunks."""

    __slots__ = ("_lines", "_plan", "_response")

    def __init__(self, plan: Plan, response: httpx.Response) -> None:
        super().__init__()
        self._plan = plan
        self._response = response
        self._lines = response.iter_lines()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Any:
        while not self.closed:
            try:
                line = next(self._lines)
            except StopIteration:
                break
            except httpx.HTTPError as exc:
                self.close()
                raise mid_stream_error(exc, self._response.request, self._plan) from exc
            try:
                chunk = self.parse(line)
            except ValueError as exc:
                self.close()
                raise mid_stream_error(exc, None, self._plan) from exc
            if chunk is not None:
                return chunk
        self.close()
        if self.received_finish_reason is None:
            raise mid_stream_error(Unfinished(), None, self._plan)
        raise StopIteration

    def close(self) -> None:
        self.closed = True
        self._response.close()

    def build_response(self, chunks: list[Any]) -> Any:
        return model_response(assemble(chunks))


class AsyncStream(_SSE):
    """``Stream`` for ``async for``."""

    __slots__ = ("_lines", "_plan", "_response")

    def __init__(self, plan: Plan, response: httpx.Response) -> None:
        super().__init__()
        self._plan = plan
        self._response = response
        self._lines = response.aiter_lines()

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        while not self.closed:
            try:
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                break
            except httpx.HTTPError as exc:
                await self.aclose()
                raise mid_stream_error(exc, self._response.request, self._plan) from exc
            try:
                chunk = self.parse(line)
            except ValueError as exc:
                await self.aclose()
                raise mid_stream_error(exc, None, self._plan) from exc
            if chunk is not None:
                return chunk
        await self.aclose()
        if self.received_finish_reason is None:
            raise mid_stream_error(Unfinished(), None, self._plan)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True
        await self._response.aclose()

    def build_response(self, chunks: list[Any]) -> Any:
        return model_response(assemble(chunks))


# --- clients -----------------------------------------------------------------------------------------

_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
_clients: dict[tuple[str, str | None], httpx.Client] = {}
_clients_lock = threading.Lock()
# An AsyncClient's connections belong to the loop that opened them: one set of clients per event loop.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str | None], httpx.AsyncClient]]
_async_clients = weakref.WeakKeyDictionary()


def _base(plan: Plan) -> str:
    return plan.url.rsplit("/chat/completions", 1)[0]


def client(plan: Plan) -> httpx.Client:
    key = (_base(plan), plan.key)
    found = _clients.get(key)
    if found is None:
        with _clients_lock:
            found = _clients.get(key)
            if found is None:
                found = _clients[key] = httpx.Client(limits=_LIMITS, timeout=plan.timeout)
    return found


def async_client(plan: Plan) -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    per_loop = _async_clients.get(loop)
    if per_loop is None:
        per_loop = _async_clients[loop] = {}
    key = (_base(plan), plan.key)
    found = per_loop.get(key)
    if found is None:
        found = per_loop[key] = httpx.AsyncClient(limits=_LIMITS, timeout=plan.timeout)
    return found


def _checked_json(plan: Plan, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise status_failure(response, plan.model)
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise malformed_failure(exc, plan.model) from exc


# --- the four calls ------------------------------------------------------------------------------------


def complete(plan: Plan) -> Any:
    """One non-streamed call; LiteLLM's ModelResponse, or its exception."""
    if not plan.key:
        raise missing_key_error(plan)
    http = client(plan)

    def attempt() -> Any:
        try:
            response = http.post(plan.url, json=plan.body, headers=plan.headers(), timeout=plan.timeout)
        except httpx.HTTPError as exc:
            raise transport_failure(exc, httpx.Request("POST", plan.url), plan.model) from exc
        return model_response(_checked_json(plan, response), response.headers)

    return run_sync(plan, attempt)


async def acomplete(plan: Plan) -> Any:
    if not plan.key:
        raise missing_key_error(plan)
    http = async_client(plan)

    async def attempt() -> Any:
        try:
            response = await http.post(plan.url, json=plan.body, headers=plan.headers(), timeout=plan.timeout)
        except httpx.HTTPError as exc:
            raise transport_failure(exc, httpx.Request("POST", plan.url), plan.model) from exc
        return model_response(_checked_json(plan, response), response.headers)

    return await run_async(plan, attempt)


def open_stream(plan: Plan) -> Stream:
    """Start a streamed call: retried like LiteLLM until the server answers 200, then never."""
    if not plan.key:
        raise missing_key_error(plan)
    http = client(plan)

    def attempt() -> Stream:
        request = http.build_request("POST", plan.url, json=plan.body, headers=plan.headers(), timeout=plan.timeout)
        try:
            response = http.send(request, stream=True)
            if response.status_code >= 400:
                response.read()
                response.close()
                raise status_failure(response, plan.model)
        except httpx.HTTPError as exc:
            raise transport_failure(exc, request, plan.model) from exc
        return Stream(plan, response)

    return run_sync(plan, attempt)


async def aopen_stream(plan: Plan) -> AsyncStream:
    if not plan.key:
        raise missing_key_error(plan)
    http = async_client(plan)

    async def attempt() -> AsyncStream:
        request = http.build_request("POST", plan.url, json=plan.body, headers=plan.headers(), timeout=plan.timeout)
        try:
            response = await http.send(request, stream=True)
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                raise status_failure(response, plan.model)
        except httpx.HTTPError as exc:
            raise transport_failure(exc, request, plan.model) from exc
        return AsyncStream(plan, response)

    return await run_async(plan, attempt)
