"""The HTTP transport of ``ChatModel``: the same API against a remote deployment's REST endpoints.

Importable without Django settings (only httpx and the app's plain types). ``run``/``arun``
never raise here either: refused connections, timeouts, 4xx/5xx and cut event streams
become ``error=True`` responses whose ``error_log`` names the cause. ``get_config`` and
``add_messages`` raise ``ChatModelError`` subclasses; ``add_messages`` sends an
``Idempotency-Key``, so retrying it after a lost response never stores the messages twice.

Each operation is written once, as a generator of *steps*: it yields the request it needs
(a dict of ``httpx`` request arguments) and receives the response, or the ``httpx.HTTPError``
raised in its place. ``_drive`` and ``_adrive`` only perform those requests, one blocking and
one awaiting. A streamed run is the same: ``_events``/``_aevents`` read the response and its
lines, and one ``StreamRun`` turns whatever they read into chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from ..exceptions import (
    ChatModelError,
    InvalidMessages,
    InvalidParams,
    RemoteError,
    SessionBusy,
    SessionOfOtherChatModel,
    exception_for_code,
)
from ..types import ChatModelConfig, LLMResponse, LLMStreamResponse
from .branches import HttpBranches
from .conversations import HttpConversations
from .sse import SSEReader, as_final, final_error

DEFAULT_READ_TIMEOUT = 120.0
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=DEFAULT_READ_TIMEOUT, write=30.0, pool=10.0)
# add_messages is retried on a lost response (same Idempotency-Key); runs are not retried.
ADD_MESSAGES_RETRIES = 2

T = TypeVar("T")
Request = dict[str, Any]  # keyword arguments of httpx's Client.request / Client.stream
Steps = Generator[Request, Any, T]  # yields requests, is sent responses (or thrown httpx errors)

# Process-wide connection pools. Sync clients: one per server and key. Async clients also per
# event loop, which owns their connections; a loop is a weak key, so a finished loop's entry
# never serves a new loop even when the new one gets the old one's id().
_clients: dict[tuple[str, str | None], httpx.Client] = {}
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


def settings_from_env(base_url: str | None, api_key: str | None) -> tuple[str | None, str | None]:
    """``base_url``/``api_key``, else ``CHATMODEL_BASE_URL``/``CHATMODEL_API_KEY`` from the environment."""
    return base_url or os.environ.get("CHATMODEL_BASE_URL") or None, api_key or os.environ.get("CHATMODEL_API_KEY")


def timeout_from_env() -> httpx.Timeout:
    """The HTTP timeouts: ``CHATMODEL_HTTP_TIMEOUT`` seconds to wait for the server's answer (default 120)."""
    read = float(os.environ.get("CHATMODEL_HTTP_TIMEOUT") or DEFAULT_READ_TIMEOUT)
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


class _LoopClients:
    """The AsyncClients of one event loop, closed while the loop shuts down."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, str | None], httpx.AsyncClient] = {}
        # asyncio.run(), asyncio.Runner and pytest-asyncio close a loop's live async generators
        # (shutdown_asyncgens) before closing the loop: this one's cleanup then closes the clients
        # while the loop can still run their aclose(). Held here, it lives as long as the entry.
        self.closer = self._close_at_shutdown()

    async def _close_at_shutdown(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            loop = asyncio.get_running_loop()
            with _clients_lock:
                if _loop_clients.get(loop) is self:
                    del _loop_clients[loop]
            for client in list(self.clients.values()):
                await client.aclose()


async def _async_client(base_url: str, api_key: str | None, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The running loop's client for this server and key; never one of another loop."""
    loop = asyncio.get_running_loop()
    with _clients_lock:
        # A loop closed without shutdown_asyncgens() (loop.close() alone) left its entry: its idle
        # connections keep it alive, so drop them here; their sockets close when collected.
        for closed in [other for other in _loop_clients if other.is_closed()]:
            del _loop_clients[closed]
        entry = _loop_clients.get(loop)
        new_entry = entry is None
        if entry is None:
            entry = _loop_clients[loop] = _LoopClients()
        client = entry.clients.get((base_url, api_key))
        if client is None or client.is_closed:
            client = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key), timeout=timeout)
            entry.clients[(base_url, api_key)] = client
    if new_entry:
        await anext(entry.closer)  # registers it with the loop (the loop tracks generators it has started)
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
    if response.status_code == 400 and isinstance(body, dict) and "variables" in body:
        # A session's prompt variables refused (docs/prompts.md): the error the in-process door raises.
        raise InvalidParams(message, field="variables")
    # The server's code names the exception (the one registry); codes of no exception stay RemoteError.
    cls = exception_for_code(code) or (SessionBusy if response.status_code == 409 else RemoteError)
    raise cls(message, code=code)


def _transport_error(exc: Exception, base_url: str) -> tuple[str, str]:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"The server at {base_url} did not answer in time ({type(exc).__name__}: {exc})."
    if isinstance(exc, httpx.ConnectError):
        return "connection_error", f"Could not connect to {base_url} ({exc})."
    return "connection_error", f"The connection to {base_url} failed ({type(exc).__name__}: {exc})."


def _connection_error(exc: httpx.HTTPError, base_url: str) -> RemoteError:
    return RemoteError(_transport_error(exc, base_url)[1], code="connection_error")


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


def _is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


def _step(steps: Steps[T], outcome: Any) -> tuple[Request | None, T | None]:
    """Advance ``steps`` with the last request's outcome: ``(next request, None)`` or ``(None, result)``."""
    try:
        request = steps.throw(outcome) if isinstance(outcome, BaseException) else steps.send(outcome)
    except StopIteration as stop:
        return None, stop.value
    return request, None


_CLOSED = object()  # what the stream readers yield when the server closed the stream


class StreamRun:
    """One streamed run request: turns what a driver read into chunks, the last one final."""

    def __init__(self, session_uuid: str, base_url: str) -> None:
        self.reader = SSEReader(session_uuid)
        self.session_uuid = session_uuid
        self.base_url = base_url

    def feed(self, item: httpx.Response | str | Exception | object) -> LLMStreamResponse | None:
        """Feed the response (its headers), then each line, then ``_CLOSED`` or the error that ended it."""
        if isinstance(item, str):
            return self.reader.line(item)
        if isinstance(item, httpx.Response):
            # Errors are JSON even to a client that asked for a stream (the body is read by then).
            return None if _is_event_stream(item) else as_final(response_from_http(item))
        if isinstance(item, ChatModelError):
            return final_error(item.code, str(item), self.session_uuid)
        if isinstance(item, httpx.HTTPError):
            if self.reader.run_uuid is None and not self.reader.deltas:
                return final_error(*_transport_error(item, self.base_url), self.session_uuid)
            return self.reader.cut(f"{type(item).__name__}: {item}")
        return self.reader.cut("the connection closed")


class HttpTransport(HttpConversations, HttpBranches):
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
        variables: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.session_uuid = session_uuid
        self.version = version
        self.variables = variables
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

    # -- the I/O: the only code that differs between sync and async
    def _drive(self, steps: Steps[T]) -> T:
        request, result = _step(steps, None)
        while request is not None:
            try:
                outcome: Any = _client(self.base_url, self.api_key, self.timeout).request(**request)
            except httpx.HTTPError as exc:
                outcome = exc
            request, result = _step(steps, outcome)
        return result  # type: ignore[return-value]

    async def _adrive(self, steps: Steps[T]) -> T:
        request, result = _step(steps, None)
        client = await _async_client(self.base_url, self.api_key, self.timeout)
        while request is not None:
            try:
                outcome: Any = await client.request(**request)
            except httpx.HTTPError as exc:
                outcome = exc
            request, result = _step(steps, outcome)
        return result  # type: ignore[return-value]

    def _events(self, request: Request) -> Generator[Any, None, None]:
        """What ``StreamRun.feed`` takes: the response, its lines, then ``_CLOSED`` or the error."""
        try:
            self._drive(self._session_steps())
            with _client(self.base_url, self.api_key, self.timeout).stream(**request) as response:
                if not _is_event_stream(response):
                    response.read()
                yield response
                yield from response.iter_lines()
            yield _CLOSED
        except (ChatModelError, httpx.HTTPError) as exc:
            yield exc

    async def _aevents(self, request: Request) -> AsyncGenerator[Any, None]:
        try:
            await self._adrive(self._session_steps())
            client = await _async_client(self.base_url, self.api_key, self.timeout)
            async with client.stream(**request) as response:
                if not _is_event_stream(response):
                    await response.aread()
                yield response
                async for line in response.aiter_lines():
                    yield line
            yield _CLOSED
        except (ChatModelError, httpx.HTTPError) as exc:
            yield exc

    # -- the steps of each operation, written once
    def _session_steps(self) -> Steps[None]:
        """Create the session on the server on first use (with this ChatModel's uuid)."""
        if self._session_exists:
            return
        try:
            response = yield {"method": "GET", "url": self._session_path()}
            if response.status_code != 404:
                owner = _raise_for(response).get("chat_model")
                if owner not in (None, self.name):
                    raise SessionOfOtherChatModel(
                        f"Session {self.session_uuid} belongs to another chat model ({owner!r})."
                    )
                if self.variables is not None:
                    # The server checks values given again for an existing session (200, or 400 when they differ).
                    again: dict[str, Any] = {"uuid": self.session_uuid, "variables": self.variables}
                    _raise_for((yield {"method": "POST", "url": self._sessions_path(), "json": again}))
            else:
                version = self._pinned if self._pinned is not None else self.version
                create: dict[str, Any] = {"uuid": self.session_uuid, "version": version}
                if self.variables is not None:
                    create["variables"] = self.variables
                # 201 created, 200 already ours; 409 session_exists: ours on another chat model; 400: not usable here.
                _raise_for((yield {"method": "POST", "url": self._sessions_path(), "json": create}))
        except httpx.HTTPError as exc:
            raise _connection_error(exc, self.base_url) from exc
        self._session_exists = True

    def _config_steps(self) -> Steps[ChatModelConfig]:
        path = self._config_path()
        try:
            response = yield {"method": "GET", "url": path, "params": {"session_uuid": self.session_uuid}}
            if response.status_code == 404 and (_json(response) or {}).get("code") == "session_not_found":
                # Not created yet: ask for the version this ChatModel will pin.
                response = yield {"method": "GET", "url": path, "params": {"version": self._pinned or self.version}}
        except httpx.HTTPError as exc:
            raise _connection_error(exc, self.base_url) from exc
        config = ChatModelConfig.from_dict(_raise_for(response))
        if not self._session_exists and self._pinned is None:
            self._pinned = config.version
        return config

    def _add_messages_steps(self, messages: list[dict[str, Any]]) -> Steps[list[dict[str, Any]]]:
        yield from self._session_steps()
        request = {
            "method": "POST",
            "url": self._session_path("messages/"),
            "json": {"messages": messages},
            "headers": {"Idempotency-Key": str(uuid.uuid4())},
        }
        for attempt in range(ADD_MESSAGES_RETRIES + 1):
            try:
                response = yield request
            except httpx.HTTPError as exc:
                if attempt == ADD_MESSAGES_RETRIES:
                    raise _connection_error(exc, self.base_url) from exc
                continue
            if response.status_code >= 500 and attempt < ADD_MESSAGES_RETRIES:
                continue
            body = _raise_for(response)
            return body.get("messages", body) if isinstance(body, dict) else body
        raise RemoteError("add_messages failed")  # pragma: no cover - the loop returns or raises

    def _run_request(self, functions: Any, tools: Any, params: dict[str, Any], *, stream: bool) -> Request:
        body: dict[str, Any] = {"stream": stream, **params}
        if functions is not None:
            body["functions"] = functions
        if tools is not None:
            body["tools"] = tools
        headers = {"Accept": "text/event-stream"} if stream else None
        return {"method": "POST", "url": self._session_path("run/"), "json": body, "headers": headers}

    def _run_steps(self, functions: Any, tools: Any, params: dict[str, Any]) -> Steps[LLMResponse]:
        try:
            yield from self._session_steps()
            response = yield self._run_request(functions, tools, params, stream=False)
        except ChatModelError as exc:
            return LLMResponse(error=True, error_code=exc.code, error_log=str(exc), session_uuid=self.session_uuid)
        except httpx.HTTPError as exc:
            code, log = _transport_error(exc, self.base_url)
            return LLMResponse(error=True, error_code=code, error_log=log, session_uuid=self.session_uuid)
        return response_from_http(response)

    # -- the ChatModel methods
    def get_config(self) -> ChatModelConfig:
        return self._drive(self._config_steps())

    def add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._drive(self._add_messages_steps(messages))

    def run(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        return self._drive(self._run_steps(functions, tools, params))

    async def arun(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        return await self._adrive(self._run_steps(functions, tools, params))

    def run_stream(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> Iterator[LLMStreamResponse]:
        run = StreamRun(self.session_uuid, self.base_url)
        with contextlib.closing(self._events(self._run_request(functions, tools, params, stream=True))) as items:
            for item in items:
                if (chunk := run.feed(item)) is not None:
                    yield chunk
                    if chunk.is_final:
                        return

    def rejoin(self) -> Iterator[LLMStreamResponse]:
        """The session's run in progress: its text so far, then the rest, then the final chunk (none: nothing)."""
        run = StreamRun(self.session_uuid, self.base_url)
        request: Request = {"method": "GET", "url": self._session_path("events/")}
        with contextlib.closing(self._events(request)) as items:
            for item in items:
                if isinstance(item, httpx.Response) and item.status_code == 204:
                    return
                if (chunk := run.feed(item)) is not None:
                    yield chunk
                    if chunk.is_final:
                        return

    async def arun_stream(
        self, *, functions: Any, tools: Any, params: dict[str, Any]
    ) -> AsyncIterator[LLMStreamResponse]:
        run = StreamRun(self.session_uuid, self.base_url)
        request = self._run_request(functions, tools, params, stream=True)
        async with contextlib.aclosing(self._aevents(request)) as items:
            async for item in items:
                if (chunk := run.feed(item)) is not None:
                    yield chunk
                    if chunk.is_final:
                        return
