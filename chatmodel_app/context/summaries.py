"""Summaries of what falls out of the window: the message sent, its cost, and the helpers of the call that writes it.

The call itself is ``services.summary_refresh``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..conf import conf
from ..llm.messages import RESULT_ROLES
from ..models import Version
from .budget import FRAMING, REPLY_PRIMING, known_window, text_tokens

SUMMARY_HEADER = "Summary of the earlier conversation:"


def summary_message(text: str) -> dict[str, str]:
    """The summary as the system message sent right after the system prompt."""
    return {"role": "system", "content": f"{SUMMARY_HEADER}\n{text}"}


def summary_tokens(model: str, text: str) -> int:
    """Tokens the summary message costs."""
    return text_tokens(model, summary_message(text)["content"]) + FRAMING if text else 0


def summary_model(version: Version) -> str:
    """The model that writes a version's summaries: its summary_model, CHATMODEL_SUMMARY_MODEL, or its own."""
    return version.summary_model or conf.SUMMARY_MODEL or version.model


def summary_chunk_budget(version: Version, model: str) -> int:
    """Tokens of transcript one summary call may take: the summary model's window less prompt, old summary, reply."""
    window = version.context_window if model == version.model and version.context_window else None
    window = window or known_window(model) or conf.DEFAULT_CONTEXT_WINDOW
    fixed = text_tokens(model, conf.SUMMARY_PROMPT) + 2 * FRAMING + REPLY_PRIMING + 50
    return int(window) - 2 * conf.SUMMARY_MAX_TOKENS - fixed


def transcript_line(message: Mapping[str, Any], max_chars: int | None = None) -> str:
    """One message as a line of the transcript the summary model reads."""
    role = message["role"]
    text = message.get("content") or ""
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars] + " [...]"
    calls = message.get("tool_calls") or (
        [{"function": message["function_call"]}] if message.get("function_call") else []
    )
    if role == "assistant" and calls:
        called = "; ".join(f"{c['function'].get('name')}({c['function'].get('arguments', '')})" for c in calls)
        return f"assistant called {called}" + (f" and said: {text}" if text else "")
    if role in RESULT_ROLES:
        return f"result of {message.get('name') or 'the function'}: {text}"
    return f"{role}: {text}"


def summary_chunks(
    messages: Sequence[Mapping[str, Any]], chunk_tokens: int, max_chunks: int
) -> tuple[list[list[Mapping[str, Any]]], bool]:
    """Split messages (oldest first) into at most ``max_chunks`` runs of at most ``chunk_tokens`` tokens, one
    summary call each, oldest first; and whether older messages had to be left out. Packed from the newest."""
    chunks: list[list[Mapping[str, Any]]] = []
    chunk: list[Mapping[str, Any]] = []
    used = 0
    for message in reversed(messages):
        cost = min(int(message["token_count"]), chunk_tokens)  # a longer message is cut to one chunk
        if chunk and used + cost > chunk_tokens:
            chunks.append(chunk)
            if len(chunks) == max_chunks:
                return [list(reversed(c)) for c in reversed(chunks)], True
            chunk, used = [], 0
        chunk.append(message)
        used += cost
    if chunk:
        chunks.append(chunk)
    return [list(reversed(c)) for c in reversed(chunks)], False


def summary_input(previous: str, chunk: Sequence[Mapping[str, Any]], chunk_tokens: int) -> str:
    """The user message of a summary call: the summary so far and the messages to fold in."""
    lines: list[str] = []
    for message in chunk:
        limit = None
        text, tokens = message.get("content") or "", int(message["token_count"])
        if tokens > chunk_tokens and text:
            # A message bigger than a whole chunk (it is then alone in it) is cut to fit, by its own ratio.
            limit = max(1, len(text) * (chunk_tokens - FRAMING) // tokens)
        lines.append(transcript_line(message, max_chars=limit))
    transcript = "\n".join(lines)
    return f"Summary so far:\n{previous or '(none yet)'}\n\nNew messages:\n{transcript}\n\nWrite the updated summary."


def summary_clip(model: str, text: str) -> str:
    """The summary cut to CHATMODEL_SUMMARY_MAX_TOKENS (a model that ignores max_tokens cannot grow it)."""
    limit = conf.SUMMARY_MAX_TOKENS
    for _ in range(4):
        tokens = text_tokens(model, text)
        if tokens <= limit:
            return text
        text = text[: max(1, len(text) * limit // tokens - 8)]
    return text
