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

This module plans a call and makes it; ``lean_errors`` shapes its failures and retries them,
``lean_stream`` reads its replies and streams.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
import weakref
from typing import Any

import httpx

from ..conf import DEFAULTS
from ._litellm import get_litellm
from .lean_errors import Failure as Failure
from .lean_errors import Unfinished as Unfinished
from .lean_errors import backoff as backoff
from .lean_errors import malformed_failure, missing_key_error, run_async, run_sync, status_failure, transport_failure
from .lean_errors import mid_stream_error as mid_stream_error
from .lean_stream import AsyncStream, Stream, model_response
from .lean_stream import Obj as Obj
from .lean_stream import assemble as assemble
from .lean_stream import loads as loads

# Chat-completions params sent as they are (LiteLLM's generic OpenAI config passes these through): the request's own
# keys, every sampling param a caller may set by default, and the logprobs family.
BODY_PARAMS = frozenset(
    {
        "messages",
        "stream",
        "stream_options",
        "tools",
        *DEFAULTS["CHATMODEL_ALLOWED_PARAMS"],
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


def _host_callbacks(litellm: Any) -> bool:
    """Whether the host registered LiteLLM callbacks (a Router's own, which older LiteLLM registers globally
    for the fallbacks it routes, do not count: they watch only its own calls)."""
    router = getattr(litellm, "Router", None)
    for name in _HOST_CALLBACKS:
        value = getattr(litellm, name, None)
        for callback in value if isinstance(value, list | tuple | set) else [value] if value else []:
            if router is not None and isinstance(getattr(callback, "__self__", None), router):
                continue
            return True
    return False


def plan(prepared: dict[str, Any], profile_key_env: str | None = None) -> Plan | None:
    """The lean call for a prepared request (``calls.prepare``'s output), or None when LiteLLM must make it."""
    route = prepared.get("model") or ""
    if not route.startswith("openai/") or not prepared.get("api_base"):
        return None
    if any(k not in BODY_PARAMS and k not in _CALL_PARAMS for k in prepared):
        return None
    litellm = get_litellm()
    if _host_callbacks(litellm):
        return None  # the host logs calls through LiteLLM: keep them visible there
    supported = supported_params(route.split("/", 1)[1])
    if supported is None:
        return None
    # The key LiteLLM's OpenAI route would use, in its order.
    key = prepared.get("api_key") or litellm.api_key or litellm.openai_key or os.environ.get("OPENAI_API_KEY")
    return Plan(prepared, key or None, profile_key_env or "OPENAI_API_KEY", supported)


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
