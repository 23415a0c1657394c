"""The offline demo model as a LiteLLM custom provider; imported only by ``_litellm.get_litellm``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from litellm import ModelResponse, Usage
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ChatCompletionMessageToolCall, Function, GenericStreamingChunk

from .offline import demo_reply, usage, words


class OfflineDemoLLM(CustomLLM):
    """LiteLLM custom provider for ``offline/<anything>``: deterministic, streaming, function calling."""

    def __init__(self, token_delay: float = 0.0) -> None:
        super().__init__()
        self.token_delay = token_delay

    def _reply(self, messages: list, optional_params: dict) -> dict:
        return demo_reply(messages, optional_params.get("tools") or optional_params.get("functions"))

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        messages, optional_params = kwargs["messages"], kwargs.get("optional_params") or {}
        reply = self._reply(messages, optional_params)
        model_response: ModelResponse = kwargs["model_response"]
        choice = model_response.choices[0]
        if reply.get("tool_calls"):
            choice.message.content = None
            choice.message.tool_calls = [
                ChatCompletionMessageToolCall(id=c["id"], type="function", function=Function(**c["function"]))
                for c in reply["tool_calls"]
            ]
            choice.finish_reason = "tool_calls"
        else:
            choice.message.content = reply["content"]
            choice.finish_reason = "stop"
        model_response.model = kwargs.get("model") or "demo"
        model_response.usage = Usage(**usage(messages, reply))  # type: ignore[attr-defined]
        return model_response

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return self.completion(*args, **kwargs)

    def _chunks(self, messages: list, optional_params: dict) -> Iterator[GenericStreamingChunk]:
        reply = self._reply(messages, optional_params)
        reply_usage = usage(messages, reply)
        if reply.get("tool_calls"):
            for index, call in enumerate(reply["tool_calls"]):
                yield GenericStreamingChunk(
                    text="",
                    tool_use={"id": call["id"], "type": "function", "function": call["function"], "index": index},
                    is_finished=False,
                    finish_reason="",
                    usage=None,
                    index=0,
                )
            finish = "tool_calls"
        else:
            for word in words(reply["content"]):
                yield GenericStreamingChunk(
                    text=word, tool_use=None, is_finished=False, finish_reason="", usage=None, index=0
                )
            finish = "stop"
        yield GenericStreamingChunk(
            text="", tool_use=None, is_finished=True, finish_reason=finish, usage=reply_usage, index=0
        )

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        for n, chunk in enumerate(self._chunks(kwargs["messages"], kwargs.get("optional_params") or {})):
            if n and self.token_delay:
                time.sleep(self.token_delay)
            yield chunk

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:
        for n, chunk in enumerate(self._chunks(kwargs["messages"], kwargs.get("optional_params") or {})):
            if n and self.token_delay:
                await asyncio.sleep(self.token_delay)
            yield chunk
