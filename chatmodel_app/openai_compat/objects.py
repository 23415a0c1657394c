"""The objects this door answers with: Conversation, Response, chat completion and Model, from stored rows."""

from __future__ import annotations

from typing import Any

from ..models import ChatModel, Message, Run, Session, Version
from . import ids, items

OWNED_BY = "chatmodel_app"


def epoch(value: Any) -> int:
    return int(value.timestamp()) if value is not None else 0


def model_label(version: Version) -> str:
    """What ``model`` says in answers: ``<chat model>@<version number>`` (as OpenAI names a dated snapshot)."""
    return f"{version.chat_model.name}@{version.number}"


def conversation_object(session: Session) -> dict[str, Any]:
    return {
        "id": ids.conversation_id(session.uuid),
        "object": "conversation",
        "created_at": epoch(session.created_at),
        "metadata": session.metadata or {},
    }


def model_object(chat_model: ChatModel) -> dict[str, Any]:
    return {
        "id": chat_model.name,
        "object": "model",
        "created": epoch(chat_model.created_at),
        "owned_by": OWNED_BY,
        "description": chat_model.description,
    }


def usage_object(run: Run | None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """Responses' usage: input, output and total tokens (the provider's counts, as the Run stores them)."""
    prompt = (usage or {}).get("prompt_tokens") if usage else (run.prompt_tokens if run else None)
    completion = (usage or {}).get("completion_tokens") if usage else (run.completion_tokens if run else None)
    prompt, completion = prompt or 0, completion or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response_status(run: Run) -> str:
    """A Run's status in Responses' words: a reply cut by max_output_tokens is ``incomplete``."""
    if run.status == Run.Status.COMPLETED and run.finish_reason == "length":
        return "incomplete"
    return str(run.status)


def run_messages(run: Run) -> list[Message]:
    return list(Message.objects.filter(run=run).select_related("run").order_by("seq"))


def previous_response_id(run: Run) -> str | None:
    previous = (
        Run.objects.filter(session_id=run.session_id, created_at__lt=run.created_at)
        .order_by("-created_at")
        .values_list("uuid", flat=True)
        .first()
    )
    return ids.response_id(previous) if previous else None


def responses_tool_choice(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "name": (value.get("function") or {}).get("name")}
    return value if value is not None else "auto"


def response_object(
    run: Run,
    *,
    session: Session,
    messages: list[Message] | None = None,
    tools: list[dict[str, Any]] | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """A Run as a Response: its reply as output items, its usage, its outcome."""
    status = status or response_status(run)
    if messages is None:
        messages = run_messages(run) if status != "in_progress" else []
    output = [item for message in messages for item in items.message_items(message)]
    error = None
    if run.status in (Run.Status.FAILED, Run.Status.INCOMPLETE) and run.error:
        error = {"code": run.error, "message": run.error_log or run.error}
    incomplete = None
    if status == "incomplete":
        incomplete = {"reason": "max_output_tokens" if run.finish_reason == "length" else "interrupted"}
    params = run.params or {}
    return {
        "id": ids.response_id(run.uuid),
        "object": "response",
        "created_at": epoch(run.created_at),
        "completed_at": epoch(run.finished_at) if run.finished_at else None,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        # The version's system prompt is the instructions; it is not shown to callers.
        "instructions": None,
        "max_output_tokens": params.get("max_tokens") or params.get("max_completion_tokens"),
        "model": model_label(run.version),
        "output": output,
        "parallel_tool_calls": params.get("parallel_tool_calls", True),
        "previous_response_id": previous_response_id(run),
        "conversation": {"id": ids.conversation_id(session.uuid)},
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        "tool_choice": responses_tool_choice(params.get("tool_choice")),
        "tools": tools or [],
        "text": {"format": {"type": "text"}},
        "truncation": "auto",
        "store": True,
        "usage": usage_object(run) if status != "in_progress" else None,
        "user": params.get("user"),
        "metadata": {k: v for k, v in (session.metadata or {}).items() if isinstance(v, str)},
    }


def chat_completion_object(run: Run, *, messages: list[Message] | None = None) -> dict[str, Any]:
    """A finished Run as a ``chat.completion``."""
    messages = run_messages(run) if messages is None else messages
    reply = messages[-1] if messages else None
    message: dict[str, Any] = {"role": "assistant", "content": reply.content if reply else None, "refusal": None}
    if reply is not None and reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.get("id"), "type": "function", "function": dict(c.get("function") or {})} for c in reply.tool_calls
        ]
    finish = chat_finish_reason(run.finish_reason, tool_calls=bool(message.get("tool_calls")))
    prompt, completion = run.prompt_tokens or 0, run.completion_tokens or 0
    return {
        "id": ids.chat_completion_id(run.uuid),
        "object": "chat.completion",
        "created": epoch(run.created_at),
        "model": model_label(run.version),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "system_fingerprint": None,
    }


def chat_finish_reason(value: str | None, *, tool_calls: bool) -> str:
    if value in ("stop", "length", "tool_calls", "content_filter", "function_call"):
        return value
    return "tool_calls" if tool_calls else "stop"
