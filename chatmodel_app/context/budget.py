"""Token accounting: what a text, a message or the tools cost, and the budget a run has for history."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import llm
from ..conf import conf
from ..models import Version

# Tokens a message costs beyond its text: role and separators (litellm counts 3 + the role).
FRAMING = 4
# Tokens providers add to prime the reply.
REPLY_PRIMING = 3
_APP_PARAMS = frozenset({"api_base", "context_window", "api_key"})


@functools.lru_cache(maxsize=256)
def _text_tokens(model: str, text: str) -> int:
    return llm.count_tokens(model, text=text)


@functools.lru_cache(maxsize=64)
def _tools_tokens(model: str, tools_json: str) -> int:
    return llm.count_tokens(model, tools=json.loads(tools_json))


def text_tokens(model: str, text: str) -> int:
    """Tokens in a text that is sent on every run (system prompt, summary): cached per model and text."""
    return _text_tokens(model, text) if text else 0


def tools_tokens(model: str, tools: Sequence[Mapping[str, Any]]) -> int:
    """Tokens the tool schemas cost in every request."""
    return _tools_tokens(model, json.dumps(list(tools), sort_keys=True)) if tools else 0


def count_content(model: str, message: Mapping[str, Any]) -> int:
    """Tokens of a message's text alone."""
    text = message.get("content") or ""
    return llm.count_tokens(model, text=text) if text else 0


def message_tokens(model: str, message: Mapping[str, Any], *, content_tokens: int | None = None) -> int:
    """Tokens one message costs in a prompt: its text, name, call id and tool calls, plus framing.

    ``content_tokens`` is the text's count when already known (add_messages counts the text before
    it gives results their call ids).
    """
    if content_tokens is None:
        content_tokens = count_content(model, message)
    calls = message.get("tool_calls") or None
    if not calls and message.get("function_call"):
        calls = [{"function": message["function_call"]}]
    parts = [message.get("name") or "", message.get("tool_call_id") or "", json.dumps(calls) if calls else ""]
    meta = " ".join(p for p in parts if p)
    return FRAMING + content_tokens + (llm.count_tokens(model, text=meta) if meta else 0)


def known_window(model: str) -> int:
    # Not cached: model info can be registered with LiteLLM after start-up (provider profiles).
    return llm.context_window(model, 0)


def context_window(version: Version) -> int:
    """Max input tokens: the version's override, else what LiteLLM knows, else CHATMODEL_DEFAULT_CONTEXT_WINDOW."""
    return int(version.context_window or known_window(version.model) or conf.DEFAULT_CONTEXT_WINDOW)


def reply_reserve(params: Mapping[str, Any]) -> int:
    """Tokens kept free for the reply: the request's max_(completion_)tokens, else CHATMODEL_DEFAULT_MAX_TOKENS."""
    return int(params.get("max_completion_tokens") or params.get("max_tokens") or conf.DEFAULT_MAX_TOKENS)


def input_budget(version: Version, *, system_tokens: int, tools_tokens: int, max_tokens: int | None) -> int:
    """Tokens left for history: context window - reply reserve - system prompt - tools - reply priming."""
    reserve = max_tokens or version.params.get("max_tokens") or conf.DEFAULT_MAX_TOKENS
    return context_window(version) - int(reserve) - system_tokens - tools_tokens - REPLY_PRIMING


def request_params(version: Version, params: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters sent to the model: the version's, overridden by the caller's allowed ones."""
    merged = {k: v for k, v in version.params.items() if k not in _APP_PARAMS}
    merged.update(params)
    return merged
