"""Response and config types with the names of the seed's ChatModel API.

Plain classes with no Django or litellm import, so the HTTP transport can use them too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast


def _parse_args(arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


@dataclass
class FunctionCall(Mapping[str, Any]):
    """A function call the model asked for: ``.name``, ``.arguments`` (JSON string), ``.args`` (dict).

    ``dict(call)`` and ``print(call)`` give the seed's ``{"name": ..., "args": {...}}``.
    """

    name: str
    arguments: str = "{}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionCall:
        """Build from ``{"name", "arguments"}`` (provider form) or ``{"name", "args"}`` (seed form)."""
        arguments = data.get("arguments")
        if arguments is None and "args" in data:
            arguments = data["args"]
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        return cls(name=str(data.get("name") or ""), arguments=arguments)

    @property
    def args(self) -> dict[str, Any]:
        """The arguments parsed from JSON ({} when the model produced invalid JSON)."""
        return _parse_args(self.arguments)

    def _as_seed(self) -> dict[str, Any]:
        return {"name": self.name, "args": self.args}

    def __getitem__(self, key: str) -> Any:
        return self._as_seed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("name", "args"))

    def __len__(self) -> int:
        return 2

    def __str__(self) -> str:
        return json.dumps(self._as_seed(), ensure_ascii=False)

    def to_provider(self) -> dict[str, str]:
        """The provider (OpenAI) form: ``{"name", "arguments"}``."""
        return {"name": self.name, "arguments": self.arguments}


@dataclass
class ToolCall:
    """One tool call: ``.id``, ``.type`` and ``.function`` (a FunctionCall); ``.name``/``.args`` as shortcuts."""

    id: str
    function: FunctionCall
    type: str = "function"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """Build from the OpenAI tool-call form."""
        return cls(
            id=str(data.get("id") or ""),
            type=str(data.get("type") or "function"),
            function=FunctionCall.from_dict(data.get("function") or {}),
        )

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def arguments(self) -> str:
        return self.function.arguments

    @property
    def args(self) -> dict[str, Any]:
        return self.function.args

    def to_dict(self) -> dict[str, Any]:
        """The provider (OpenAI) form."""
        return {"id": self.id, "type": self.type, "function": self.function.to_provider()}

    def __str__(self) -> str:
        return json.dumps({"id": self.id, "name": self.name, "args": self.args}, ensure_ascii=False)


@dataclass
class LLMResponse:
    """The result of ``run()``/``arun()``: never raised, check ``.error``."""

    content: str | None = None
    error: bool = False
    error_log: str | None = None
    error_code: str | None = None
    function_call: FunctionCall | None = None
    tool_calls: list[ToolCall] | None = None
    api_response: Any = None
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    status: str | None = None
    model: str | None = None
    cost: float | None = None
    session_uuid: str | None = None
    run_uuid: str | None = None
    message_id: int | None = None
    message_seq: int | None = None
    version_uuid: str | None = None
    version: int | None = None
    # promptmodel's outputs parsed from the reply; None unless a version parses outputs (none here do).
    # Not part of to_dict(), so the wire format is unchanged.
    parsed_outputs: dict[str, Any] | None = None

    @property
    def raw_output(self) -> str | None:
        """The reply text, under the name older promptmodel code uses."""
        return self.content

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LLMResponse:
        """Rebuild a response from ``to_dict()`` output (the REST API's JSON); unknown keys are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("function_call"):
            known["function_call"] = FunctionCall.from_dict(known["function_call"])
        if known.get("tool_calls"):
            known["tool_calls"] = [ToolCall.from_dict(t) for t in known["tool_calls"]]
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``api_response`` left out: it is the provider's object)."""
        return {
            "content": self.content,
            "error": self.error,
            "error_log": self.error_log,
            "error_code": self.error_code,
            "function_call": self.function_call.to_provider() if self.function_call else None,
            "tool_calls": [t.to_dict() for t in self.tool_calls] if self.tool_calls else None,
            "usage": self.usage,
            "finish_reason": self.finish_reason,
            "status": self.status,
            "model": self.model,
            "cost": self.cost,
            "session_uuid": self.session_uuid,
            "run_uuid": self.run_uuid,
            "message_id": self.message_id,
            "message_seq": self.message_seq,
            "version_uuid": self.version_uuid,
            "version": self.version,
        }


@dataclass
class LLMStreamResponse(LLMResponse):
    """One streamed chunk: ``.content`` is the text delta.

    Deltas of a tool call are in ``.tool_call_deltas``. The last chunk has ``.is_final``,
    empty ``.content``, and carries the assembled ``function_call``/``tool_calls``,
    ``api_response``, ``usage`` and the stored message's ids; a failure ends the stream
    with a final chunk that has ``.error`` set.
    """

    tool_call_deltas: list[dict[str, Any]] | None = None
    is_final: bool = False
    # The wire events (``chatmodel_app.events``) this chunk stands for, for SSE and websockets.
    events: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["tool_call_deltas"] = self.tool_call_deltas
        data["is_final"] = self.is_final
        return data


@dataclass
class ChatModelConfig:
    """What ``get_config()`` returns: the system prompt, the version's details and the session's messages."""

    system_prompt: str
    version_detail: dict[str, Any]
    message_logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> str:
        return cast(str, self.version_detail["model"])

    @property
    def version(self) -> int:
        return cast(int, self.version_detail["version"])

    @property
    def version_uuid(self) -> str:
        return cast(str, self.version_detail["uuid"])

    @property
    def name(self) -> str:
        return cast(str, self.version_detail["name"])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChatModelConfig:
        """Rebuild a config from ``to_dict()`` output (the REST API's JSON)."""
        return cls(
            system_prompt=data["system_prompt"],
            version_detail=dict(data["version_detail"]),
            message_logs=list(data.get("message_logs") or []),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "system_prompt": self.system_prompt,
            "version_detail": dict(self.version_detail),
            "message_logs": list(self.message_logs),
        }
