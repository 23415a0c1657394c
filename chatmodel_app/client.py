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
        variables: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.session_uuid = _session_uuid(session_uuid)
        self.version = version
        # Values of the version's prompt variables, checked and stored when the session is created (docs/prompts.md).
        self.variables = dict(variables) if variables is not None else None
        from .transports.http import settings_from_env

        self.base_url, api_key = settings_from_env(base_url, api_key)
        self._transport: Transport
        if self.base_url:
            # A remote deployment: every method goes over its REST API (no Django needed here).
            from .transports.http import HttpTransport

            self._transport = HttpTransport(
                name, self.session_uuid, version, base_url=self.base_url, api_key=api_key, variables=self.variables
            )
        else:
            from .transports.orm import OrmTransport

            self._transport = OrmTransport(name, self.session_uuid, version, user=user, variables=self.variables)

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

    # --- named conversations and feedback (docs/conversations.md) ---------------------------------------

    def feedback(self, seq: int, rating: str | int | None, comment: str = "") -> dict[str, Any] | None:
        """Rate the assistant message ``seq`` (``res.message_seq``): "up" or "down", with an optional comment.

        Giving it again changes it; ``rating=None`` takes it back. Returns the stored feedback (None when taken back).
        """
        return self._transport.feedback(seq, rating, comment)

    def get_session(self) -> dict[str, Any]:
        """This session's uuid, chat model, version, title (and who set it), archive state and last activity."""
        return self._transport.get_session()

    def rename(self, title: str) -> dict[str, Any]:
        """Set the session's title ("" clears it); a title set here is never replaced by a generated one."""
        return self._transport.update_session(title=title)

    def archive(self) -> dict[str, Any]:
        """Archive the session: it leaves the default session list, and stays usable."""
        return self._transport.update_session(archived=True)

    def unarchive(self) -> dict[str, Any]:
        """Bring an archived session back to the default session list."""
        return self._transport.update_session(archived=False)

    def delete(self) -> None:
        """Delete the session with its messages, runs and feedback (refused while a run is in progress)."""
        self._transport.delete_session()

    # --- branches (docs/branches.md) ------------------------------------------------------------------

    def regenerate(
        self,
        functions: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        stream: bool = False,
        double_texting: str | None = None,
        **params: Any,
    ) -> LLMResponse | Iterator[LLMStreamResponse]:
        """Answer the last user message again, as ``run`` does (never raises); the old reply stays as an
        alternative (``switch_branch``)."""
        run = {"functions": functions, "tools": tools, "params": params}
        return self._transport.regenerate(run=run, stream=stream, double_texting=double_texting)

    def edit_message(
        self,
        seq: int,
        content: str,
        *,
        run: bool = True,
        stream: bool = False,
        double_texting: str | None = None,
        functions: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> Any:
        """Replace the user message ``seq`` with ``content`` on a new branch and answer it, as ``run`` does.

        The old message and what followed stay as an alternative. With ``run=False`` it is only stored,
        and the current path is returned (as ``get_path``); errors then raise.
        """
        options = {"functions": functions, "tools": tools, "params": params} if run else None
        return self._transport.edit_message(seq, content, run=options, stream=stream, double_texting=double_texting)

    def switch_branch(self, seq: int, index: int) -> list[dict[str, Any]]:
        """Show alternative ``index`` (from 0) of the message ``seq``; returns the new path (as ``get_path``)."""
        return self._transport.switch_branch(seq, index)

    def get_path(self) -> list[dict[str, Any]]:
        """The current path's messages with their ``seq`` and ``alternatives`` ({"index", "count"} or None)."""
        return self._transport.get_path()

    def fork(self, seq: int) -> ChatModel:
        """A new session holding this one's current path up to message ``seq``; its ChatModel."""
        new_uuid = self._transport.fork(seq)
        return ChatModel(
            self.name,
            session_uuid=new_uuid,
            version=self.version,
            base_url=self.base_url,
            api_key=getattr(self._transport, "api_key", None),
            user=getattr(self._transport, "user", None),
        )

    def get_prompts(self) -> list[dict[str, str]]:
        """Deprecated: the system prompt as ``[{"role": "system", "content": ...}]``; use get_config()."""
        warnings.warn("get_prompts() is deprecated; use get_config().system_prompt", DeprecationWarning, stacklevel=2)
        return [{"role": "system", "content": self.get_config().system_prompt}]

    def get_messages(self) -> list[dict[str, Any]]:
        """Deprecated: the system prompt then the session's messages; use get_config().message_logs."""
        warnings.warn("get_messages() is deprecated; use get_config().message_logs", DeprecationWarning, stacklevel=2)
        config = self.get_config()
        return [{"role": "system", "content": config.system_prompt}, *config.message_logs]
