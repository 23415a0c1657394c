"""The in-process transport of ``ChatModel``: calls ``services`` through the ORM.

Django is imported only when a method runs, so ``import chatmodel_app.client`` stays cheap.
The ORM refuses to run on an event loop's thread, so the sync methods called from async code
hop to one worker thread (``_worker``, process-wide); ``arun``/``arun_stream`` are native async.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..exceptions import SessionNotFound, SessionOfOtherChatModel
from ..types import ChatModelConfig, LLMResponse, LLMStreamResponse
from .branches import OrmBranches
from .conversations import OrmConversations

if TYPE_CHECKING:
    from ..models import Session, Version

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


class OrmTransport(OrmConversations, OrmBranches):
    """Talks to the pipeline in this process, through the ORM."""

    def __init__(
        self, name: str, session_uuid: str, version: str | int, user: Any = None, variables: Any = None
    ) -> None:
        self.name = name
        self.session_uuid = session_uuid
        self.version = version
        self.user = user
        self.variables = variables
        self._variables_checked = variables is None
        self._session: Session | None = None
        self._version: Version | None = None  # resolved once, so get_config and the first run agree

    # Sessions are created on first use and cached; the version is pinned then.
    def _pinned_version(self) -> Version:
        from ..selectors import chat_model_get, version_resolve

        if self._version is None:
            self._version = version_resolve(chat_model=chat_model_get(name=self.name), spec=self.version)
        return self._version

    def _existing_session(self) -> Session | None:
        from ..selectors import chat_model_get, session_get

        if self._session is None:
            try:
                self._session = session_get(session_uuid=self.session_uuid, chat_model=chat_model_get(name=self.name))
            except SessionOfOtherChatModel:
                raise
            except SessionNotFound:
                return None
        return self._session

    def session(self) -> Session:
        """The session row, created (pinned to the version) on first use."""
        from ..services import session_get_or_create
        from ..services.sessions import session_variables_match

        existing = self._existing_session()
        if existing is None:
            version = self._version if self._version is not None else self.version
            self._session = session_get_or_create(
                name=self.name,
                session_uuid=self.session_uuid,
                version=version,
                user=self.user,
                variables=self.variables,
            )
        elif not self._variables_checked:
            # Values given for a session that already exists must be the ones it was created with.
            session_variables_match(session=existing, variables=self.variables)
        self._variables_checked = True
        return self._session  # type: ignore[return-value]

    def _session_or_error(self, stream: bool) -> Session | LLMResponse:
        """The session, or the error response a run gives when it cannot have one."""
        from .. import services

        try:
            return self.session()
        except Exception as exc:
            return services.error_response(exc, stream=stream)

    # -- the ChatModel methods
    def get_config(self) -> ChatModelConfig:
        return _blocking(self._get_config)

    def _get_config(self) -> ChatModelConfig:
        from ..selectors import config_build

        session = self._existing_session()
        if session is not None:
            return config_build(version=session.version, session=session)
        return config_build(version=self._pinned_version())

    def add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _blocking(self._add_messages, messages)

    def _add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from ..selectors import message_log
        from ..services import messages_add

        # Trusted in-process code: no cap on the number of messages (the REST and websocket doors keep theirs).
        rows = messages_add(session=self.session(), messages=messages, max_messages=None)
        return [message_log(m) for m in rows]

    def run(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        return _blocking(self._run, functions, tools, params)

    def _run(self, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        from .. import services

        session = self._session_or_error(stream=False)
        if isinstance(session, LLMResponse):
            return session
        return services.run(session=session, functions=functions, tools=tools, params=params)

    def rejoin(self) -> Iterator[LLMStreamResponse]:
        from ..services import live

        session = self._existing_session()
        chunks = live.follow(session=session) if session is not None else iter(())
        return _blocking_iter(chunks) if _in_event_loop() else chunks

    def run_stream(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> Iterator[LLMStreamResponse]:
        chunks = self._run_stream(functions, tools, params)
        return _blocking_iter(chunks) if _in_event_loop() else chunks

    def _run_stream(self, functions: Any, tools: Any, params: dict[str, Any]) -> Iterator[LLMStreamResponse]:
        from .. import services

        session = self._session_or_error(stream=True)
        if isinstance(session, LLMResponse):
            yield session  # type: ignore[misc]
            return
        yield from services.run_stream(session=session, functions=functions, tools=tools, params=params)

    async def arun(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse:
        from asgiref.sync import sync_to_async

        from .. import services

        session = await sync_to_async(self._session_or_error)(stream=False)
        if isinstance(session, LLMResponse):
            return session
        return await services.arun(session=session, functions=functions, tools=tools, params=params)

    async def arun_stream(
        self, *, functions: Any, tools: Any, params: dict[str, Any]
    ) -> AsyncIterator[LLMStreamResponse]:
        from asgiref.sync import sync_to_async

        from .. import services

        session = await sync_to_async(self._session_or_error)(stream=True)
        if isinstance(session, LLMResponse):
            yield session  # type: ignore[misc]
            return
        async for chunk in services.arun_stream(session=session, functions=functions, tools=tools, params=params):
            yield chunk
