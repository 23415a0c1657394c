"""The lean client's replies: JSON read as the SDK's objects, LiteLLM's ModelResponse, and the SSE stream readers."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx

from .lean_errors import Unfinished, mid_stream_error

if TYPE_CHECKING:
    from .lean import Plan


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
