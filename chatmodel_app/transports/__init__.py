"""The transports behind ``ChatModel``: ``orm`` (this process's database) and ``http`` (a remote deployment).

``ChatModel`` picks one and delegates every call to it; both give the same return types, and
both make ``run``/``arun`` return error responses instead of raising. Importing this package
imports neither Django nor httpx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Protocol

from ..types import ChatModelConfig, LLMResponse, LLMStreamResponse


class Transport(Protocol):
    """What ``ChatModel`` needs from a transport."""

    session_uuid: str

    def get_config(self) -> ChatModelConfig: ...

    def add_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def run(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> LLMResponse: ...

    def run_stream(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> Iterator[LLMStreamResponse]: ...

    def rejoin(self) -> Iterator[LLMStreamResponse]: ...

    def arun(self, *, functions: Any, tools: Any, params: dict[str, Any]) -> Awaitable[LLMResponse]: ...

    def arun_stream(
        self, *, functions: Any, tools: Any, params: dict[str, Any]
    ) -> AsyncIterator[LLMStreamResponse]: ...

    # Named conversations and feedback (transports/conversations.py).
    def get_session(self) -> dict[str, Any]: ...

    def feedback(self, seq: Any, rating: Any, comment: Any) -> dict[str, Any] | None: ...

    def update_session(self, **fields: Any) -> dict[str, Any]: ...

    def delete_session(self) -> None: ...

    # Branches (transports/branches.py).
    def regenerate(
        self, *, run: dict[str, Any], stream: bool, double_texting: Any
    ) -> LLMResponse | Iterator[LLMStreamResponse]: ...

    def edit_message(
        self, seq: Any, content: Any, *, run: dict[str, Any] | None, stream: bool, double_texting: Any
    ) -> Any: ...

    def switch_branch(self, seq: Any, index: Any) -> list[dict[str, Any]]: ...

    def get_path(self) -> list[dict[str, Any]]: ...

    def fork(self, seq: Any) -> str: ...
