"""``ChatModel``: the seed's Python API, over the site's own database.

    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    res = session.run()

The class delegates to one small transport object; ``OrmTransport`` calls
``services.py`` in this process. ``run``/``arun`` never raise; ``get_config`` and
``add_messages`` raise ``ChatModelError`` subclasses (they are not model runs).
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .types import ChatModelConfig, LLMResponse, LLMStreamResponse

_worker: ThreadPoolExecutor | None = None


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _closing(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from django.db import connections

    try:
        return fn(*args, **kwargs)
    finally:
        connections.close_all()


def _blocking(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; from async code, on a worker thread (the ORM refuses the event loop's thread).

    The seed's async example calls the sync ``add_messages`` before ``await arun()``; this
    makes that work as written, at the cost of blocking the loop for that call.
    """
    global _worker
    if not _in_event_loop():
        return fn(*args, **kwargs)
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatmodel-sync")
    return _worker.submit(_closing, fn, *args, **kwargs).result()


def _blocking_iter(iterator: Iterator[Any]) -> Iterator[Any]:
    """Iterate ``iterator``, each step through ``_blocking``."""
    sentinel = object()
    while True:
        item = _blocking(next, iterator, sentinel)
        if item is sentinel:
            return
        yield item


class OrmTransport:
    """Talks to the pipeline in this process, through the ORM."""

    def __init__(self, name: str, session_uuid: str, version: str | int, user: Any = None) -> None:
        self.name = name
        self.session_uuid = session_uuid
        self.version = version
        self.user = user
        self._session = None
        self._version = None  # resolved once, so get_config and the first run agree

    # Sessions are created on first use and cached; the version is pinned then.
    def _pinned_version(self):
        from .selectors import chat_model_get, version_resolve

        if self._version is None:
            self._version = version_resolve(chat_model=chat_model_get(name=self.name), spec=self.version)
        return self._version

    def _existing_session(self):
        from .exceptions import SessionNotFound
        from .selectors import chat_model_get, session_get

        if self._session is None:
            try:
                self._session = session_get(session_uuid=self.session_uuid, chat_model=chat_model_get(name=self.name))
            except SessionNotFound as exc:
                if "another chat model" in str(exc):
                    raise
                return None
        return self._session

    def session(self):
        """The session row, created (pinned to the version) on first use."""
        from .services import session_get_or_create

        if self._existing_session() is None:
            version = self._version if self._version is not None else self.version
            self._session = session_get_or_create(
                name=self.name, session_uuid=self.session_uuid, version=version, user=self.user
            )
        return self._session

    def get_config(self) -> ChatModelConfig:
        from .selectors import config_build

        session = self._existing_session()
        if session is not None:
            return config_build(version=session.version, session=session)
        return config_build(version=self._pinned_version())

    def add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from .selectors import message_log
        from .services import messages_add

        return [message_log(m) for m in messages_add(session=self.session(), messages=messages)]

    def run(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        from . import services

        try:
            session = self.session()
        except Exception as exc:
            return services.error_response(exc)
        return services.run(session=session, functions=functions, tools=tools, params=params)

    def run_stream(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> Iterator[LLMStreamResponse]:
        from . import services

        try:
            session = self.session()
        except Exception as exc:
            yield services.error_response(exc, stream=True)
            return
        yield from services.run_stream(session=session, functions=functions, tools=tools, params=params)

    async def arun(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        from asgiref.sync import sync_to_async

        from . import services

        try:
            session = await sync_to_async(self.session)()
        except Exception as exc:
            return services.error_response(exc)
        return await services.arun(session=session, functions=functions, tools=tools, params=params)

    async def arun_stream(
        self, *, functions: Any, tools: Any, params: dict[str, Any]
    ) -> AsyncIterator[LLMStreamResponse]:
        from asgiref.sync import sync_to_async

        from . import services

        try:
            session = await sync_to_async(self.session)()
        except Exception as exc:
            yield services.error_response(exc, stream=True)
            return
        async for chunk in services.arun_stream(session=session, functions=functions, tools=tools, params=params):
            yield chunk


class AsyncStream(AsyncIterator[LLMStreamResponse], Awaitable["AsyncStream"]):
    """What ``arun(stream=True)`` returns: iterate it with ``async for``, awaited or not."""

    def __init__(self, iterator: AsyncIterator[LLMStreamResponse]) -> None:
        self._iterator = iterator

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> LLMStreamResponse:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        await self._iterator.aclose()  # type: ignore[attr-defined]

    def __await__(self) -> Generator[Any, None, AsyncStream]:
        # ``res = await session.arun(stream=True)`` then ``async for r in res`` works too.
        if False:  # pragma: no cover - makes this a generator function
            yield
        return self


class ChatModel:
    """A session with a chat model: ``add_messages``, then ``run``/``arun`` for the reply."""

    def __init__(
        self,
        name: str,
        session_uuid: str | uuid.UUID | None = None,
        version: str | int = "deploy",
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        user: Any = None,
    ) -> None:
        self.name = name
        self.session_uuid = str(session_uuid) if session_uuid is not None else str(uuid.uuid4())
        self.version = version
        from .remote import settings_from_env

        self.base_url, api_key = settings_from_env(base_url, api_key)
        if self.base_url:
            # A remote deployment: every method goes over its REST API (no Django needed here).
            from .remote import HttpTransport

            self._transport = HttpTransport(name, self.session_uuid, version, base_url=self.base_url, api_key=api_key)
        else:
            self._transport = OrmTransport(name, self.session_uuid, version, user=user)

    def __repr__(self) -> str:
        return f"ChatModel({self.name!r}, session_uuid={self.session_uuid!r}, version={self.version!r})"

    @property
    def _orm(self) -> bool:
        return isinstance(self._transport, OrmTransport)

    def _sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # Only the ORM refuses to run on an event loop's thread; HTTP calls just block.
        return _blocking(fn, *args, **kwargs) if self._orm else fn(*args, **kwargs)

    def get_config(self) -> ChatModelConfig:
        """The system prompt, version details and this session's messages."""
        return self._sync(self._transport.get_config)

    def add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add messages to the session; returns them as stored (with inferred tool_call_ids)."""
        return self._sync(self._transport.add_messages, messages)

    def run(
        self, functions: list[dict] | None = None, tools: list[dict] | None = None, stream: bool = False, **params: Any
    ) -> LLMResponse | Iterator[LLMStreamResponse]:
        """Have the model answer the session; an LLMResponse (or chunks with stream=True). Never raises."""
        if stream:
            chunks = self._transport.run_stream(functions=functions, tools=tools, params=params)
            return _blocking_iter(chunks) if self._orm and _in_event_loop() else chunks
        return self._sync(self._transport.run, functions=functions, tools=tools, params=params)

    def arun(
        self, functions: list[dict] | None = None, tools: list[dict] | None = None, stream: bool = False, **params: Any
    ) -> Awaitable[LLMResponse] | AsyncStream:
        """``run`` without blocking: await it, or with stream=True iterate it with ``async for``."""
        if stream:
            return AsyncStream(self._transport.arun_stream(functions=functions, tools=tools, params=params))
        return self._transport.arun(functions=functions, tools=tools, params=params)

    def get_prompts(self) -> list[dict[str, str]]:
        """Deprecated: the system prompt as ``[{"role": "system", "content": ...}]``; use get_config()."""
        warnings.warn("get_prompts() is deprecated; use get_config().system_prompt", DeprecationWarning, stacklevel=2)
        return [{"role": "system", "content": self.get_config().system_prompt}]

    def get_messages(self) -> list[dict[str, Any]]:
        """Deprecated: the system prompt then the session's messages; use get_config().message_logs."""
        warnings.warn("get_messages() is deprecated; use get_config().message_logs", DeprecationWarning, stacklevel=2)
        config = self.get_config()
        return [{"role": "system", "content": config.system_prompt}, *config.message_logs]
