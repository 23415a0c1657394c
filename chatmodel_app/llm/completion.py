"""A reply as the app stores it: ``Completion``, built from a whole response or assembled from a stream's chunks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import providers
from ._litellm import get_litellm
from .errors import scrub
from .model_info import is_offline


@dataclass
class Completion:
    """One reply, whether it came whole or was assembled from a stream."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, str] | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    cost: float | None = None
    model: str | None = None
    api_response: Any = None
    # False when a stream ended before the provider said it was done.
    complete: bool = True
    # The model string that answered (a fallback, when the primary failed) and the failed attempts before it.
    answered_model: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


class StreamAssembler:
    """Collects a stream's chunks: gives each chunk's deltas, then the whole reply."""

    def __init__(self, stream: Any, model: str) -> None:
        self.stream = stream
        self.model = model
        self.chunks: list[Any] = []
        self.text_parts: list[str] = []
        self.saw_finish = False

    def feed(self, chunk: Any) -> tuple[str, list[dict[str, Any]]]:
        """Record a chunk; return its text delta and tool-call deltas."""
        self.chunks.append(chunk)
        choices = getattr(chunk, "choices", None) or ()
        if not choices:
            return "", []
        if getattr(choices[0], "finish_reason", None):
            self.saw_finish = True
        delta = choices[0].delta
        text = getattr(delta, "content", None) or ""
        if text:
            self.text_parts.append(text)
        tool_deltas = []
        for call in getattr(delta, "tool_calls", None) or ():
            function = getattr(call, "function", None)
            tool_deltas.append(
                {
                    "index": getattr(call, "index", 0) or 0,
                    "id": getattr(call, "id", None),
                    "name": getattr(function, "name", None),
                    "arguments": getattr(function, "arguments", None) or "",
                }
            )
        legacy = getattr(delta, "function_call", None)
        if legacy is not None:
            tool_deltas.append(
                {
                    "index": 0,
                    "id": None,
                    "name": getattr(legacy, "name", None),
                    "arguments": getattr(legacy, "arguments", None) or "",
                }
            )
        return text, tool_deltas

    @property
    def partial_text(self) -> str:
        """The text streamed so far."""
        return "".join(self.text_parts)

    def finish(self) -> Completion:
        """The assembled reply; ``complete`` is False when the provider never finished it."""
        litellm = get_litellm()
        release = getattr(self.stream, "release", None)
        if release is not None:
            release()
        # LiteLLM ends a cut stream with a finish_reason of "stop" of its own making; the
        # finish reason the provider really sent is only on the stream wrapper.
        received = getattr(self.stream, "received_finish_reason", "unknown")
        if received is None:
            received = getattr(self.stream, "intermittent_finish_reason", None)
        provider_stream = getattr(
            self.stream, "is_provider_stream", type(self.stream).__name__ == "CustomStreamWrapper"
        )
        if received is None and not provider_stream and self.saw_finish:
            # The Router wraps the provider's stream in a second wrapper that sees only finished
            # chunks; the inner one has already raised if the provider cut the stream.
            received = "stop"
        if not self.chunks:
            return Completion(content="", complete=False, model=self.model)
        try:
            build = getattr(self.stream, "build_response", None)
            built = build(self.chunks) if build is not None else litellm.stream_chunk_builder(self.chunks)
        except Exception:  # a malformed stream: keep what text there was
            return Completion(content=self.partial_text, complete=False, model=self.model)
        completion = from_response(built, self.model, report_from=self.stream)
        completion.complete = received is not None
        return completion


def from_response(response: Any, model: str, report_from: Any = None) -> Completion:
    choice = response.choices[0] if getattr(response, "choices", None) else None
    message = getattr(choice, "message", None)
    tool_calls = None
    raw_calls = getattr(message, "tool_calls", None)
    if raw_calls:
        tool_calls = [
            {
                "id": getattr(c, "id", None) or f"call_{i}",
                "type": "function",
                "function": {"name": c.function.name or "", "arguments": c.function.arguments or "{}"},
            }
            for i, c in enumerate(raw_calls)
        ]
    function_call = None
    raw_fc = getattr(message, "function_call", None)
    if raw_fc is not None and getattr(raw_fc, "name", None):
        function_call = {"name": raw_fc.name, "arguments": raw_fc.arguments or "{}"}
    usage = None
    raw_usage = getattr(response, "usage", None)
    if raw_usage is not None:
        usage = {
            "prompt_tokens": int(getattr(raw_usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(raw_usage, "completion_tokens", 0) or 0),
            "total_tokens": int(getattr(raw_usage, "total_tokens", 0) or 0),
        }
    answered, attempts = _fallback_report(report_from if report_from is not None else response, model)
    return Completion(
        content=getattr(message, "content", None),
        tool_calls=tool_calls,
        function_call=function_call,
        finish_reason=getattr(choice, "finish_reason", None),
        usage=usage,
        cost=_cost(response, answered),
        model=getattr(response, "model", None) or model,
        api_response=response,
        answered_model=answered,
        attempts=attempts,
    )


def _cost(response: Any, model: str) -> float | None:
    if is_offline(model):
        return 0.0
    litellm = get_litellm()
    try:
        return float(litellm.completion_cost(completion_response=response, model=providers.resolve(model).route))
    except Exception:  # no price known for this model
        return None


def _fallback_report(obj: Any, requested: str) -> tuple[str, list[dict[str, Any]]]:
    """Which model group answered and the failed attempts before it, from LiteLLM's response headers."""
    hidden = getattr(obj, "_hidden_params", None) or {}
    headers = hidden.get("additional_headers") or {}
    answered = headers.get("x-litellm-model-group") or requested
    raw = headers.get("x-litellm-fallback-errors") or "[]"
    try:
        errors = json.loads(raw) if isinstance(raw, str) else list(raw)
    except ValueError:
        errors = []
    # LiteLLM lists the newest failure first; the Run records them in the order they happened.
    attempts = [
        {"error": scrub(str(e.get("message", ""))), "code": e.get("code"), "type": e.get("type")}
        for e in reversed(errors)
        if isinstance(e, dict)
    ]
    return answered, attempts
