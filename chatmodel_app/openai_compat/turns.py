"""A turn of this door: which chat model and version, which session, which new messages, which run options.

Everything is checked before anything is stored: a refused request leaves no session and no message behind.
The rules are the shared ones: ``api.serializers.RunSerializer`` (so ``validation``'s parameter, tool and
provider-setting rules) for the run options, ``validation.validate_messages`` and ``services.messages_add`` for
the messages, ``services.double_texting`` when the session is busy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from .. import selectors, services, validation
from ..api import serializers
from ..api.base import _valid
from ..conf import conf
from ..exceptions import InvalidParams
from ..llm.messages import PYTHON_ROLES
from ..models import ChatModel, Session, Version
from ..services import double_texting

# Roles of the history a client gives for a NEW session (a stateless call, a new conversation's items): the
# history is the client's own, so its assistant turns and tool results are kept as given (docs/openai.md).
# Messages added to an existing session follow CHATMODEL_API_ALLOWED_ROLES, as on the REST API.
HISTORY_ROLES = PYTHON_ROLES

# Responses fields accepted and not acted on (documented in docs/openai.md).
RESPONSES_IGNORED = frozenset(
    {"include", "truncation", "service_tier", "prompt_cache_key", "safety_identifier", "top_logprobs", "stream_options"}
)
# Responses fields that are this door's own; everything else is a run parameter (and refused unless allowed).
RESPONSES_FIELDS = frozenset(
    {
        *("model", "input", "instructions", "conversation", "previous_response_id", "tools", "tool_choice"),
        *("parallel_tool_calls", "stream", "temperature", "top_p", "max_output_tokens", "metadata", "store"),
        *("user", "text", "reasoning", "background", "prompt", "max_tool_calls"),
    }
)
# Chat Completions fields that are not run parameters.
CHAT_FIELDS = frozenset({"model", "messages", "stream_options", "metadata", "store"})


def model_parse(value: Any) -> tuple[ChatModel, str]:
    """``name``, ``name@<version number>`` or ``name@<label>``: the chat model and the version spec."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParams(
            "model is required: the name of a chat model (GET /v1/models), optionally name@<version> or name@<label>.",
            field="model",
        )
    name, _, spec = value.partition("@")
    return selectors.chat_model_get(name=name), (spec or "deploy")


def version_for(chat_model: ChatModel, spec: str) -> Version:
    return selectors.version_resolve(chat_model=chat_model, spec=spec)


def check_model_of(session: Session, value: Any) -> None:
    """A ``model`` given with an existing conversation must name its chat model (and its pinned version)."""
    if value is None:
        return
    chat_model, spec = model_parse(value)
    if chat_model.pk != session.chat_model_id:
        raise InvalidParams(
            f"This conversation belongs to chat model {session.chat_model.name!r}, not {chat_model.name!r}.",
            field="model",
        )
    if spec != "deploy" and version_for(chat_model, spec).pk != session.version_id:
        raise InvalidParams(
            f"This conversation is pinned to {session.chat_model.name}@{session.version.number}; "
            "leave the version out or name that one.",
            field="model",
        )


@dataclass
class RunOptions:
    """What ``services.run``/``run_stream`` take, checked by the REST API's rules."""

    functions: Any = None
    tools: Any = None
    params: dict[str, Any] = field(default_factory=dict)

    def kwargs(self, session: Session) -> dict[str, Any]:
        return {"session": session, "functions": self.functions, "tools": self.tools, "params": self.params}


def run_options(fields: Mapping[str, Any], version: Version) -> RunOptions:
    """Run options in the REST API's shape, validated by its serializer (parameters, tools, provider settings)."""
    # The parameter rules first, on their own, so a refusal names its parameter (OpenAI's ``param``).
    validation.validate_run_params(validation.run_request_params(fields), version)
    data = _valid(serializers.RunSerializer, dict(fields), version=version)
    return RunOptions(functions=data["functions"], tools=data["tools"], params=data["params"])


# --- Responses ---------------------------------------------------------------------------------------


def responses_tools(value: Any) -> list[dict[str, Any]] | None:
    """Responses' flat function tools in the chat shape; other tool types are refused."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidParams("tools must be a list of function tools.", field="tools")
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, Mapping) else type(tool).__name__
            raise InvalidParams(f"tools[{i}]: only function tools are supported here; got {kind!r}.", field="tools")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": function})
    return out


def responses_tool_choice(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get("type") == "function" and "name" in value:
        return {"type": "function", "function": {"name": value["name"]}}
    return value


def responses_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` as the chat ``response_format``."""
    if text is None:
        return None
    if not isinstance(text, Mapping):
        raise InvalidParams("text must be an object such as {'format': {'type': 'text'}}.", field="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping):
        raise InvalidParams("text.format must be an object.", field="text")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidParams(f"text.format.type must be text, json_object or json_schema; got {kind!r}.", field="text")


def responses_refusals(body: Mapping[str, Any]) -> None:
    """What a Responses request may not ask of this server."""
    if body.get("instructions") not in (None, ""):
        raise InvalidParams(
            "instructions cannot be given: the chat model's version has the instructions (its system prompt), "
            "managed in the admin. Put what you want to say in input.",
            field="instructions",
        )
    if body.get("prompt") is not None:
        raise InvalidParams(
            "prompt objects are not supported: prompts are the chat models' versions, managed in the admin; "
            "name one in model (name, name@<version> or name@<label>).",
            field="prompt",
        )
    if body.get("store") is False:
        raise InvalidParams("store cannot be false: every response is stored (and shown in the admin).", field="store")
    if body.get("background"):
        raise InvalidParams("background responses are not supported: use stream instead.", field="background")
    if body.get("reasoning"):
        raise InvalidParams(
            "reasoning options are not supported: the version sets the model's options.", field="reasoning"
        )
    if body.get("conversation") is not None and body.get("previous_response_id") is not None:
        raise InvalidParams("Give conversation or previous_response_id, not both.", field="conversation")


def responses_run_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The run options of a Responses request, in the REST API's shape (unknown fields go through, to be refused)."""
    fields: dict[str, Any] = {
        key: value for key, value in body.items() if key not in RESPONSES_FIELDS and key not in RESPONSES_IGNORED
    }
    tools = responses_tools(body.get("tools"))
    if tools:
        fields["tools"] = tools
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(key) is not None:
            fields[key] = body[key]
    if body.get("max_output_tokens") is not None:
        fields["max_tokens"] = body["max_output_tokens"]
    if body.get("tool_choice") is not None:
        fields["tool_choice"] = responses_tool_choice(body["tool_choice"])
    response_format = responses_format(body.get("text"))
    if response_format is not None:
        fields["response_format"] = response_format
    return fields


# --- storing the turn --------------------------------------------------------------------------------


def history_check(messages: list[dict[str, Any]]) -> None:
    """The shared message rules, before a new session is made for them."""
    validation.validate_messages(
        messages,
        allowed_roles=HISTORY_ROLES,
        max_messages=conf.MAX_MESSAGES_PER_REQUEST,
        max_chars=conf.MAX_MESSAGE_CHARS,
    )


def session_start(
    *, chat_model: ChatModel, version: Version, user: Any, metadata: Mapping[str, Any], messages: list[dict[str, Any]]
) -> Session:
    """A new session holding the client's history; nothing is kept if the history is refused."""
    with transaction.atomic():
        session = services.session_create(chat_model=chat_model, version=version, user=user, metadata=metadata)
        if messages:
            services.messages_add(session=session, messages=messages, allowed_roles=HISTORY_ROLES)
    return session


def messages_append(*, session: Session, messages: list[dict[str, Any]]) -> list[Any]:
    """Add messages to an existing session as the REST API does: its roles, and its double-texting policy.

    A busy session is refused (409) unless the version's policy interrupts the active run; a run queued behind
    another (enqueue) has no response to answer with, so that policy refuses too.
    """
    if not messages:
        return []
    policy = double_texting.policy_for(session.version)
    if policy == double_texting.Policy.ENQUEUE:
        return services.messages_add(session=session, messages=messages, allowed_roles=conf.API_ALLOWED_ROLES)
    submitted = double_texting.messages_submit(session=session, messages=messages, allowed_roles=conf.API_ALLOWED_ROLES)
    return submitted.messages
