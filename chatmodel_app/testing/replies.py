"""What the fake server answers: scripted ``FakeReply`` objects, the default echo, and the usage it reports."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# "eof": a stream that ends cleanly ([DONE], closed chunked body) after cut_after chunks but never sent a
# finish_reason, as some servers do when they stop generating mid-answer.
# "401_echo": a 401 whose message repeats the key the client sent, as OpenAI's "Incorrect API key provided: <key>".
FAULTS = frozenset({"429", "500", "401", "401_echo", "400_context", "slow", "cut", "eof", "malformed"})


@dataclass
class FakeReply:
    """One scripted answer of the fake server: text, tool calls, legacy function call and/or a fault."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    fault: str | None = None
    delay: float = 0.0
    cut_after: int = 2
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {sorted(FAULTS)}")


def split_into_chunks(text: str) -> list[str]:
    """Split text into word chunks that keep their leading whitespace, so ``"".join`` restores it."""
    # Trailing whitespace becomes its own chunk so that the round trip is exact.
    return re.findall(r"\s*\S+|\s+", text)


def message_text(content: Any) -> str:
    """Return the text of a message content that is a string or a list of OpenAI content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return " ".join(texts)
    return str(content)


def echo_reply(body: dict[str, Any]) -> FakeReply:
    """Default reply: echo the last user message, or greet when the request has no user message."""
    messages = body.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return FakeReply(content=f"Echo: {message_text(message.get('content'))}")
    return FakeReply(content="Hello! What can I help you with?")


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    messages = [m for m in (body.get("messages") or []) if isinstance(m, dict)]
    chars = sum(len(message_text(m.get("content"))) for m in messages)
    return chars // 4 + len(messages)


def split_arguments(arguments: str) -> list[str]:
    """Split a JSON arguments string into at least two pieces, as OpenAI streams them."""
    if len(arguments) < 2:
        return [arguments, ""]
    step = max(1, len(arguments) // 3)
    pieces = [arguments[i : i + step] for i in range(0, len(arguments), step)]
    return pieces


def arguments_string(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments)


def tool_tokens(tool_calls: list[dict[str, Any]], reply: FakeReply) -> int:
    args = [tc["arguments"] for tc in tool_calls]
    if reply.function_call is not None and not tool_calls:
        args.append(arguments_string(reply.function_call.get("arguments")))
    return sum(len(a) // 4 + 1 for a in args)


def reply_usage(body: dict[str, Any], reply: FakeReply, default_completion: int) -> dict[str, int]:
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else estimate_prompt_tokens(body)
    completion = reply.completion_tokens if reply.completion_tokens is not None else default_completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
