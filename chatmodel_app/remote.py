"""The HTTP transport of ``ChatModel``: the same API against a remote deployment's REST endpoints.

Importable without Django settings (only httpx and the app's plain types). ``run``/``arun``
never raise here either: refused connections, timeouts, 4xx/5xx and cut event streams
become ``error=True`` responses whose ``error_log`` names the cause. ``get_config`` and
``add_messages`` raise ``ChatModelError`` subclasses; ``add_messages`` sends an
``Idempotency-Key``, so retrying it after a lost response never stores the messages twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from .exceptions import (
    ChatModelError,
    ChatModelNotFound,
    InvalidMessages,
    InvalidParams,
    RemoteError,
    SessionBusy,
    SessionNotFound,
    VersionNotFound,
)
from .types import ChatModelConfig, LLMResponse, LLMStreamResponse

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=30.0, pool=10.0)
# add_messages is retried on a lost response (same Idempotency-Key); runs are not retried.
ADD_MESSAGES_RETRIES = 2
_EXCEPTIONS = {
    "chat_model_not_found": ChatModelNotFound,
    "version_not_found": VersionNotFound,
    "session_not_found": SessionNotFound,
    "session_busy": SessionBusy,
    "invalid_messages": InvalidMessages,
    "invalid_params": InvalidParams,
}

_clients: dict[tuple[str, str | None], httpx.Client] = {}
_async_clients: dict[tuple[str, str | None, int], httpx.AsyncClient] = {}
_clients_lock = threading.Lock()


def settings_from_env(base_url: str | None, api_key: str | None) -> tuple[str | None, str | None]:
    """``base_url``/``api_key``, else ``CHATMODEL_BASE_URL``/``CHATMODEL_API_KEY`` from the environment."""
    return base_url or os.environ.get("CHATMODEL_BASE_URL") or None, api_key or os.environ.get("CHATMODEL_API_KEY")


def timeout_from_env() -> httpx.Timeout:
    """The HTTP timeouts: ``CHATMODEL_HTTP_TIMEOUT`` seconds to wait for the server's answer (default 120)."""
    read = float(os.environ.get("CHATMODEL_HTTP_TIMEOUT") or DEFAULT_TIMEOUT.read)
    return httpx.Timeout(connect=min(5.0, read), read=read, write=30.0, pool=10.0)


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "chatmodel-app-client"}
    if api_key:
        headers["Authorization"] = f"Token {api_key}"
    return headers


def _client(base_url: str, api_key: str | None, timeout: httpx.Timeout) -> httpx.Client:
    # One client (one connection pool) per server and key, reused by every ChatModel.
    key = (base_url, api_key)
    with _clients_lock:
        client = _clients.get(key)
        if client is None or client.is_closed:
            client = _clients[key] = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout)
    return client


def _async_client(base_url: str, api_key: str | None, timeout: httpx.Timeout) -> httpx.AsyncClient:
    # An AsyncClient belongs to the event loop that first used it.
    key = (base_url, api_key, id(asyncio.get_running_loop()))
    client = _async_clients.get(key)
    if client is None or client.is_closed:
        client = _async_clients[key] = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout)
    return client


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(body: Any, response: httpx.Response) -> tuple[str, str]:
    """A code and a readable message from an error response."""
    if isinstance(body, dict):
        code = body.get("error_code") or body.get("code")
        message = body.get("error_log") or body.get("detail")
        if message is None:
            message = "; ".join(f"{k}: {v}" for k, v in body.items())
        return str(code or f"http_{response.status_code}"), f"HTTP {response.status_code}: {message}"
    text = response.text[:500] if response.content else response.reason_phrase
    return f"http_{response.status_code}", f"HTTP {response.status_code}: {text}"


def _raise_for(response: httpx.Response) -> Any:
    """The JSON body of a successful response; otherwise the matching ChatModelError."""
    body = _json(response)
    if response.is_success:
        return body
    code, message = _detail(body, response)
    if response.status_code == 400 and isinstance(body, dict) and "messages" in body:
        raise InvalidMessages(message)
    cls = _EXCEPTIONS.get(code)
    if cls is None and response.status_code == 409:
        cls = SessionBusy
    raise (cls or RemoteError)(message, code=code)


def _transport_error(exc: Exception, base_url: str) -> tuple[str, str]:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"The server at {base_url} did not answer in time ({type(exc).__name__}: {exc})."
    if isinstance(exc, httpx.ConnectError):
        return "connection_error", f"Could not connect to {base_url} ({exc})."
    return "connection_error", f"The connection to {base_url} failed ({type(exc).__name__}: {exc})."


def response_from_http(response: httpx.Response) -> LLMResponse:
    """The LLMResponse of a run request, whatever its status."""
    body = _json(response)
    if isinstance(body, dict) and "error" in body and "content" in body:
        result = LLMResponse.from_dict(body)
        # Over HTTP the provider's object stays on the server: api_response is the server's JSON.
        result.api_response = body
        return result
    code, message = _detail(body, response)
    return LLMResponse(error=True, error_code=code, error_log=message)


def _final_error(code: str, log: str, session_uuid: str, run_uuid: str | None = None) -> LLMStreamResponse:
    return LLMStreamResponse(
        content="",
        error=True,
        error_code=code,
        error_log=log,
        session_uuid=session_uuid,
        run_uuid=run_uuid,
        is_final=True,
    )


class SSEReader:
    """Turns Server-Sent Event lines into stream chunks, the same way for sync and async reads."""

    def __init__(self, session_uuid: str) -> None:
        self.session_uuid = session_uuid
        self.event_type: str | None = None
        self.data: list[str] = []
        self.run_uuid: str | None = None
        self.deltas = 0
        self.finished = False

    def line(self, line: str) -> LLMStreamResponse | None:
        """Feed one line; return a chunk when an event completes it."""
        if line.startswith(":"):
            return None  # keep-alive comment
        if line:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                self.event_type = value
            elif field == "data":
                self.data.append(value)
            return None
        if not self.data:
            return None
        try:
            event = json.loads("\n".join(self.data))
        except ValueError:
            event = {"type": "error"}
        self.data, self.event_type = [], None
        return self.chunk(event)

    def chunk(self, event: dict[str, Any]) -> LLMStreamResponse | None:
        kind = event.get("type")
        self.run_uuid = event.get("run_id") or self.run_uuid
        common = {"session_uuid": self.session_uuid, "run_uuid": self.run_uuid, "events": [event]}
        if kind == "run.delta":
            self.deltas += 1
            return LLMStreamResponse(content=event.get("delta", ""), status="in_progress", **common)
        if kind == "run.tool_call_delta":
            return LLMStreamResponse(content="", tool_call_deltas=event.get("deltas"), status="in_progress", **common)
        if kind in ("run.completed", "run.failed"):
            self.finished = True
            if isinstance(event.get("response"), dict):
                final = LLMStreamResponse.from_dict({**event["response"], "content": "", "is_final": True})
                final.events = [event]
                final.api_response = event  # the server's terminal event (the provider's object stays there)
                return final
            return _final_error(
                event.get("error") or "run_failed", event.get("error_log") or "", self.session_uuid, self.run_uuid
            )
        return None

    def cut(self, reason: str) -> LLMStreamResponse:
        """The final chunk of a stream that ended before the run did."""
        return _final_error(
            "stream_cut",
            f"The server's event stream ended before the run finished ({reason}; {self.deltas} deltas received). "
            "The run may still have completed on the server: get_config().message_logs shows what was stored.",
            self.session_uuid,
            self.run_uuid,
        )


class HttpTransport:
    """Talks to a deployment's REST API (``chatmodel_app.urls`` included at ``base_url``)."""

    def __init__(
        self,
        name: str,
        session_uuid: str,
        version: str | int,
        *,
        base_url: str,
        api_key: str | None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self.name = name
        self.session_uuid = session_uuid
        self.version = version
        self.base_url = base_url.rstrip("/") + "/"
        self.api_key = api_key
        self.timeout = timeout or timeout_from_env()
        self._session_exists = False
        self._pinned: int | None = None  # the version number get_config saw, for the session it creates

    # -- paths
    def _config_path(self) -> str:
        return f"api/chat-models/{quote(self.name, safe='')}/config/"

    def _sessions_path(self) -> str:
        return f"api/chat-models/{quote(self.name, safe='')}/sessions/"

    def _session_path(self, tail: str = "") -> str:
        return f"api/sessions/{self.session_uuid}/{tail}"

    def _client(self) -> httpx.Client:
        return _client(self.base_url, self.api_key, self.timeout)

    def _aclient(self) -> httpx.AsyncClient:
        return _async_client(self.base_url, self.api_key, self.timeout)

    def _create_body(self) -> dict[str, Any]:
        version = self._pinned if self._pinned is not None else self.version
        return {"uuid": self.session_uuid, "version": version}

    def _after_create(self, response: httpx.Response) -> None:
        # 201 created, 200 already ours; 409 session_exists: someone else's, which this key may not use.
        _raise_for(response)
        self._session_exists = True

    def _after_lookup(self, response: httpx.Response) -> bool:
        if response.status_code == 404:
            return False
        body = _raise_for(response)
        if body.get("chat_model") not in (None, self.name):
            raise SessionNotFound(
                f"Session {self.session_uuid} belongs to another chat model ({body['chat_model']!r})."
            )
        self._session_exists = True
        return True

    def ensure_session(self) -> None:
        """Create the session on the server on first use (with this ChatModel's uuid)."""
        if self._session_exists:
            return
        try:
            if not self._after_lookup(self._client().get(self._session_path())):
                self._after_create(self._client().post(self._sessions_path(), json=self._create_body()))
        except httpx.HTTPError as exc:
            raise RemoteError(_transport_error(exc, self.base_url)[1], code="connection_error") from exc

    async def aensure_session(self) -> None:
        if self._session_exists:
            return
        client = self._aclient()
        try:
            if not self._after_lookup(await client.get(self._session_path())):
                self._after_create(await client.post(self._sessions_path(), json=self._create_body()))
        except httpx.HTTPError as exc:
            raise RemoteError(_transport_error(exc, self.base_url)[1], code="connection_error") from exc

    # -- the ChatModel methods
    def get_config(self) -> ChatModelConfig:
        params: dict[str, Any] = {"session_uuid": self.session_uuid}
        try:
            response = self._client().get(self._config_path(), params=params)
            if response.status_code == 404 and (_json(response) or {}).get("code") == "session_not_found":
                # Not created yet: ask for the version this ChatModel will pin.
                response = self._client().get(self._config_path(), params={"version": self._pinned or self.version})
        except httpx.HTTPError as exc:
            raise RemoteError(_transport_error(exc, self.base_url)[1], code="connection_error") from exc
        config = ChatModelConfig.from_dict(_raise_for(response))
        if not self._session_exists and self._pinned is None:
            self._pinned = config.version
        return config

    def add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.ensure_session()
        key = str(uuid.uuid4())
        for attempt in range(ADD_MESSAGES_RETRIES + 1):
            try:
                response = self._client().post(
                    self._session_path("messages/"), json={"messages": messages}, headers={"Idempotency-Key": key}
                )
            except httpx.HTTPError as exc:
                if attempt == ADD_MESSAGES_RETRIES:
                    raise RemoteError(_transport_error(exc, self.base_url)[1], code="connection_error") from exc
                continue
            if response.status_code >= 500 and attempt < ADD_MESSAGES_RETRIES:
                continue
            body = _raise_for(response)
            return body.get("messages", body) if isinstance(body, dict) else body
        raise RemoteError("add_messages failed")  # pragma: no cover - the loop returns or raises

    def _run_body(self, functions: Any, tools: Any, params: dict[str, Any], stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"stream": stream, **params}
        if functions is not None:
            body["functions"] = functions
        if tools is not None:
            body["tools"] = tools
        return body

    def run(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        try:
            self.ensure_session()
            response = self._client().post(
                self._session_path("run/"), json=self._run_body(functions, tools, params, False)
            )
        except ChatModelError as exc:
            return LLMResponse(error=True, error_code=exc.code, error_log=str(exc), session_uuid=self.session_uuid)
        except httpx.HTTPError as exc:
            code, log = _transport_error(exc, self.base_url)
            return LLMResponse(error=True, error_code=code, error_log=log, session_uuid=self.session_uuid)
        return response_from_http(response)

    async def arun(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        try:
            await self.aensure_session()
            response = await self._aclient().post(
                self._session_path("run/"), json=self._run_body(functions, tools, params, False)
            )
        except ChatModelError as exc:
            return LLMResponse(error=True, error_code=exc.code, error_log=str(exc), session_uuid=self.session_uuid)
        except httpx.HTTPError as exc:
            code, log = _transport_error(exc, self.base_url)
            return LLMResponse(error=True, error_code=code, error_log=log, session_uuid=self.session_uuid)
        return response_from_http(response)

    def run_stream(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> Iterator[LLMStreamResponse]:
        reader = SSEReader(self.session_uuid)
        try:
            self.ensure_session()
            with self._client().stream(
                "POST",
                self._session_path("run/"),
                json=self._run_body(functions, tools, params, True),
                headers={"Accept": "text/event-stream"},
            ) as response:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    response.read()
                    yield _as_final(response_from_http(response))
                    return
                for line in response.iter_lines():
                    chunk = reader.line(line)
                    if chunk is not None:
                        yield chunk
                        if chunk.is_final:
                            return
            yield reader.cut("the connection closed")
        except ChatModelError as exc:
            yield _final_error(exc.code, str(exc), self.session_uuid)
        except httpx.HTTPError as exc:
            if reader.run_uuid is None and not reader.deltas:
                yield _final_error(*_transport_error(exc, self.base_url), self.session_uuid)
            else:
                yield reader.cut(f"{type(exc).__name__}: {exc}")

    async def arun_stream(
        self, *, functions: Any, tools: Any, params: dict[str, Any]
    ) -> AsyncIterator[LLMStreamResponse]:
        reader = SSEReader(self.session_uuid)
        try:
            await self.aensure_session()
            async with self._aclient().stream(
                "POST",
                self._session_path("run/"),
                json=self._run_body(functions, tools, params, True),
                headers={"Accept": "text/event-stream"},
            ) as response:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    await response.aread()
                    yield _as_final(response_from_http(response))
                    return
                async for line in response.aiter_lines():
                    chunk = reader.line(line)
                    if chunk is not None:
                        yield chunk
                        if chunk.is_final:
                            return
            yield reader.cut("the connection closed")
        except ChatModelError as exc:
            yield _final_error(exc.code, str(exc), self.session_uuid)
        except httpx.HTTPError as exc:
            if reader.run_uuid is None and not reader.deltas:
                yield _final_error(*_transport_error(exc, self.base_url), self.session_uuid)
            else:
                yield reader.cut(f"{type(exc).__name__}: {exc}")


def _as_final(response: LLMResponse) -> LLMStreamResponse:
    data = response.to_dict()
    data.update(content="", is_final=True)
    chunk = LLMStreamResponse.from_dict(data)
    chunk.api_response = response.api_response
    return chunk
