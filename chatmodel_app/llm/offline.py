"""The offline demo model: a deterministic stand-in for an LLM, so the app works with no key and no network.

``demo_reply`` is plain Python (no litellm import here); ``_offline_provider.OfflineDemoLLM``
wraps it as a LiteLLM custom provider registered under ``offline/`` (model string ``offline/demo``).
It is a toy, not a model: it greets, echoes, calls an offered function when the user's message names it, and
reports a function's result back in a sentence.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

PROVIDER = "offline"
MODEL = "offline/demo"
_GREETING = re.compile(r"^\s*(hello|hi|hey|good (morning|afternoon|evening))\b", re.IGNORECASE)
_PLACE = re.compile(r"\b(?:in|at|for|near)\s+([A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*)*)")


def estimate_tokens(text: str | None) -> int:
    """A rough token count (about four characters a token), the offline model's own tokenizer."""
    return max(1, (len(text or "") + 3) // 4)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


def _pick_tool(user_text: str, tools: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    words = set(re.findall(r"[a-z0-9]+", user_text.lower()))
    for tool in tools:
        function = tool.get("function", tool)
        name_words = [w for w in re.split(r"[_\-]+", function.get("name", "").lower()) if w not in {"get", "set", ""}]
        if name_words and all(w in words or w.rstrip("s") in words for w in name_words):
            return function
    return None


def _fill_args(function: Mapping[str, Any], user_text: str) -> dict[str, Any]:
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = parameters.get("required") or list(properties)
    place = _PLACE.search(user_text)
    args: dict[str, Any] = {}
    for name in required:
        schema = properties.get(name, {})
        if "enum" in schema and schema["enum"]:
            args[name] = schema["enum"][0]
        elif schema.get("type") in ("integer", "number"):
            args[name] = 0
        elif schema.get("type") == "boolean":
            args[name] = False
        elif place and name.lower() in {"location", "city", "place", "where", "country", "region"}:
            args[name] = place.group(1).rstrip("?.!,")
        else:
            args[name] = user_text.strip()
    return args


def demo_reply(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None) -> dict:
    """The offline model's answer to ``messages``: ``{"content": str}`` or ``{"tool_calls": [...]}``."""
    last = messages[-1] if messages else {"role": "user", "content": ""}
    if last.get("role") in ("tool", "function"):
        # Answer with the function's result, in the words of the call that asked for it.
        call = _find_call(messages, last.get("tool_call_id"))
        result = _text(last.get("content")).strip()
        values = [str(v) for v in (call or {}).values() if isinstance(v, str | int | float)]
        if values:
            return {"content": f"It's {result} in {values[0]}."}
        return {"content": f"The result is {result}."}
    user_text = _text(last.get("content"))
    if tools:
        function = _pick_tool(user_text, tools)
        if function is not None:
            args = _fill_args(function, user_text)
            call_id = f"call_{uuid.uuid4().hex[:24]}"
            return {
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": function["name"], "arguments": json.dumps(args)},
                    }
                ]
            }
    if _GREETING.match(user_text):
        return {"content": "Hello! What can I help you with?"}
    if not user_text.strip():
        return {"content": "I'm the offline demo model. Say something and I'll answer."}
    return {"content": f"You said: {user_text.strip()}"}


def _find_call(messages: Sequence[Mapping[str, Any]], call_id: str | None) -> dict[str, Any] | None:
    for message in reversed(messages):
        for call in message.get("tool_calls") or ():
            if call_id is None or call.get("id") == call_id:
                try:
                    return json.loads(call["function"]["arguments"] or "{}")
                except (KeyError, TypeError, ValueError):
                    return {}
    return None


def words(text: str) -> list[str]:
    """The streamed pieces of ``text``: a word each, spaces kept so that joining them gives the text back.

    A word equal to the one before joins it: LiteLLM's stream wrapper fails a stream that repeats the same
    chunk many times ("ha " * 150), which a demo model must not provoke.
    """
    out: list[str] = []
    for word in re.findall(r"\s*\S+", text) or [text]:
        out.append(word)
        while len(out) > 1 and out[-1] == out[-2]:
            last = out.pop()
            out[-1] += last
    return out


def usage(messages: Sequence[Mapping[str, Any]], reply: dict) -> dict[str, int]:
    prompt = sum(estimate_tokens(_text(m.get("content"))) + 3 for m in messages)
    completion = estimate_tokens(reply.get("content") or json.dumps(reply.get("tool_calls") or ""))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
