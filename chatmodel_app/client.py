"""``ChatModel``: the seed's Python API, over the site's own database or a remote deployment.

    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    res = session.run()

The class delegates to one transport object (``chatmodel_app.transports``): ``OrmTransport``
calls the services in this process, ``HttpTransport`` a deployment's REST API. ``run``/``arun``
never raise; ``get_config`` and ``add_messages`` raise ``ChatModelError`` subclasses (they are
not model runs), and a malformed ``session_uuid`` is refused at construction.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from .exceptions import InvalidParams
from .types import ChatModelConfig, LLMResponse, LLMStreamResponse

if TYPE_CHECKING:
    from .transports import Transport


def _session_uuid(value: str | uuid.UUID | None) -> str:
    """``value`` as a canonical uuid string (a new one for None); InvalidParams when it is not a uuid."""
    if value is None:
        return str(uuid.uuid4())
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        raise InvalidParams(
            f"session_uuid must be a UUID such as '{uuid.uuid4()}' (or None for a new session), not {value!r}."
        ) from None


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
        self.session_uuid = _session_uuid(session_uuid)
        self.version = version
        from .transports.http import settings_from_env

        self.base_url, api_key = settings_from_env(base_url, api_key)
        self._transport: Transport
        if self.base_url:
            # A remote deployment: every method goes over its REST API (no Django needed here).
            from .transports.http import HttpTransport

            self._transport = HttpTransport(name, self.session_uuid, version, base_url=self.base_url, api_key=api_key)
        else:
            from .transports.orm import OrmTransport

            self._transport = OrmTransport(name, self.session_uuid, version, user=user)

    def __repr__(self) -> str:
        return f"ChatModel({self.name!r}, session_uuid={self.session_uuid!r}, version={self.version!r})"

    def get_config(self) -> ChatModelConfig:
        """The system prompt, version details and this session's messages."""
        return self._transport.get_config()

    def add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add messages to the session; returns them as stored (with inferred tool_call_ids)."""
        return self._transport.add_messages(messages)

    def run(
        self,
        functions: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        stream: bool = False,
        **params: Any,
    ) -> LLMResponse | Iterator[LLMStreamResponse]:
        """Have the model answer the session; an LLMResponse (or chunks with stream=True). Never raises."""
        if stream:
            return self._transport.run_stream(functions=functions, tools=tools, params=params)
        return self._transport.run(functions=functions, tools=tools, params=params)

    def arun(
        self,
        functions: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        stream: bool = False,
        **params: Any,
    ) -> Awaitable[LLMResponse] | AsyncStream:
        """``run`` without blocking: await it, or with stream=True iterate it with ``async for``."""
        if stream:
            return AsyncStream(self._transport.arun_stream(functions=functions, tools=tools, params=params))
        return self._transport.arun(functions=functions, tools=tools, params=params)

    def rejoin(self) -> Iterator[LLMStreamResponse]:
        """Follow the session's run in progress (started anywhere): the text so far as the first chunk, then the
        rest, then a final chunk, as ``run(stream=True)`` gives. Nothing when no run is in progress."""
        return self._transport.rejoin()

    def get_prompts(self) -> list[dict[str, str]]:
        """Deprecated: the system prompt as ``[{"role": "system", "content": ...}]``; use get_config()."""
        warnings.warn("get_prompts() is deprecated; use get_config().system_prompt", DeprecationWarning, stacklevel=2)
        return [{"role": "system", "content": self.get_config().system_prompt}]

    def get_messages(self) -> list[dict[str, Any]]:
        """Deprecated: the system prompt then the session's messages; use get_config().message_logs."""
        warnings.warn("get_messages() is deprecated; use get_config().message_logs", DeprecationWarning, stacklevel=2)
        config = self.get_config()
        return [{"role": "system", "content": config.system_prompt}, *config.message_logs]
