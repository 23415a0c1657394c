"""Run events -> the AI SDK's UI message stream: SSE frames ``data: <part JSON>``, ending with ``data: [DONE]``.

The parts are the ``UIMessageChunk`` union of the ``ai`` package (5 and 6): ``start`` (its ``messageId`` is the
run's uuid, the id the reply keeps in the client and when the client sends it back; a run answering tool results
continues the reply that asked for them, and keeps its id), ``start-step``,
``text-start`` / ``text-delta`` / ``text-end``, ``tool-input-start`` / ``tool-input-delta`` /
``tool-input-available`` (``tool-input-error`` when the model's arguments are not JSON), ``finish-step``,
``finish``, ``abort`` (a cancelled run), ``error``.

One ``Translator`` per response: it is called with each run event in order (the live events of a run, or a
``run.snapshot`` then the events after it for a client that resumes), keeps which parts are open, and returns
the bytes to send. A rejoin starts with the snapshot, so a resumed stream is a replay of the reply from its
start (what ``DefaultChatTransport`` expects: ``resumeStreamIsReplay``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from .. import events
from ..services import live

# The response headers of a UI message stream (the ``ai`` package's UI_MESSAGE_STREAM_HEADERS), content type aside.
HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
CONTENT_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
# The header naming the session a chat id maps to (so a page can also use the REST API on it).
SESSION_HEADER = "X-Chatmodel-Session"

# OpenAI-style finish reasons -> the AI SDK's FinishReason.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}


def part(data: dict[str, Any]) -> bytes:
    """One SSE frame of a part."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n\n"


def error_text(code: str | None, log: str | None) -> str:
    """The ``errorText`` of a failed run: its error code and the log the REST API shows too (no credential)."""
    code = code or "error"
    return f"{code}: {log}" if log else code


class Translator:
    """The parts of one response, from run events (see the module)."""

    def __init__(self, *, message_id: str | None = None) -> None:
        # The UI message the parts build: the run's uuid, or the reply this run continues (after tool results).
        self.message_id = message_id
        self.run_id: str | None = None
        self.session_uuid: str | None = None
        self.text_id: str | None = None
        self.texts = 0
        # Tool calls by their stream index: id, name, the arguments so far, whether tool-input-start went out.
        self.tools: dict[int, dict[str, Any]] = {}
        # The text sent so far (a stream that lost its run's events ends from the stored reply: ``ending``).
        self.text = ""
        self.done = False

    # --- the events --------------------------------------------------------------------------------------

    def __call__(self, event: dict[str, Any], response: Any = None) -> bytes:
        """The frames for ``event`` (``response``, the final chunk the SSE pump passes along, is not needed)."""
        if self.done:
            return b""
        out: list[dict[str, Any]] = []
        kind = event.get("type")
        if kind == events.RUN_STARTED:
            self._start(out, event)
        elif kind == live.SNAPSHOT:
            self._start(out, event)
            self._text(out, event.get("content") or "")
            self._tool_deltas(out, event.get("tool_call_deltas") or [])
        elif kind == events.TEXT_DELTA:
            self._start(out, event)
            self._text(out, event.get("delta") or "")
        elif kind == events.TOOL_CALL_DELTA:
            self._start(out, event)
            self._tool_deltas(out, event.get("deltas") or [])
        elif kind == events.RUN_COMPLETED:
            self._completed(out, event)
        elif kind == events.RUN_FAILED:
            self._failed(out, event)
        else:
            return b""
        data = b"".join(part(p) for p in out)
        return data + DONE if self.done else data

    def close(self) -> bytes:
        """The end of a stream that stopped without its run's last event (it should not): close what is open."""
        if self.done:
            return b""
        out: list[dict[str, Any]] = []
        if self.run_id is not None:
            self._end_text(out)
            out.append({"type": "finish-step"})
            out.append({"type": "finish", "finishReason": "other", "messageMetadata": self._metadata()})
        self.done = True
        return b"".join(part(p) for p in out) + DONE

    # --- the parts ---------------------------------------------------------------------------------------

    def _metadata(self, **more: Any) -> dict[str, Any]:
        return {"sessionId": self.session_uuid, "runId": self.run_id, **more}

    def _start(self, out: list[dict[str, Any]], event: dict[str, Any]) -> None:
        if self.run_id is not None or not event.get("run_id"):
            return
        self.run_id, self.session_uuid = str(event["run_id"]), event.get("session_uuid")
        message_id = self.message_id or self.run_id
        out.append({"type": "start", "messageId": message_id, "messageMetadata": self._metadata()})
        out.append({"type": "start-step"})

    def _text(self, out: list[dict[str, Any]], text: str) -> None:
        if not text:
            return
        if self.text_id is None:
            self.text_id = f"text-{self.texts}"
            self.texts += 1
            out.append({"type": "text-start", "id": self.text_id})
        out.append({"type": "text-delta", "id": self.text_id, "delta": text})
        self.text += text

    def _end_text(self, out: list[dict[str, Any]]) -> None:
        if self.text_id is not None:
            out.append({"type": "text-end", "id": self.text_id})
            self.text_id = None

    def _tool_deltas(self, out: list[dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
        for delta in deltas:
            index = int(delta.get("index") or 0)
            call = self.tools.setdefault(index, {"id": None, "name": None, "arguments": "", "started": False})
            call["id"] = call["id"] or delta.get("id")
            call["name"] = call["name"] or delta.get("name")
            arguments = delta.get("arguments") or ""
            call["arguments"] += arguments
            if not call["started"]:
                if not call["name"]:
                    continue  # tool-input-start needs the name: wait for it (the arguments are kept)
                self._end_text(out)
                call["id"] = call["id"] or f"call_{self.run_id or 'run'}_{index}"
                call["started"] = True
                out.append({"type": "tool-input-start", "toolCallId": call["id"], "toolName": call["name"]})
                if call["arguments"]:
                    out.append(
                        {"type": "tool-input-delta", "toolCallId": call["id"], "inputTextDelta": call["arguments"]}
                    )
            elif arguments:
                out.append({"type": "tool-input-delta", "toolCallId": call["id"], "inputTextDelta": arguments})

    def _tools_available(self, out: list[dict[str, Any]], stored: list[dict[str, Any]]) -> None:
        """Each tool call's whole input; calls the stream never named take the stored message's."""
        for position, (_index, call) in enumerate(sorted(self.tools.items())):
            if not call["started"] and position < len(stored):
                function = stored[position].get("function") or {}
                call["id"] = call["id"] or stored[position].get("id")
                call["name"] = call["name"] or function.get("name")
            if not call["name"]:
                continue
            call["id"] = call["id"] or f"call_{self.run_id or 'run'}_{position}"
            if not call["started"]:
                out.append({"type": "tool-input-start", "toolCallId": call["id"], "toolName": call["name"]})
            try:
                value = json.loads(call["arguments"] or "{}")
            except ValueError:
                out.append(
                    {
                        "type": "tool-input-error",
                        "toolCallId": call["id"],
                        "toolName": call["name"],
                        "input": call["arguments"],
                        "errorText": "The model's arguments are not valid JSON.",
                    }
                )
                continue
            out.append(
                {"type": "tool-input-available", "toolCallId": call["id"], "toolName": call["name"], "input": value}
            )

    def _completed(self, out: list[dict[str, Any]], event: dict[str, Any]) -> None:
        self._start(out, event)
        self._end_text(out)
        message = event.get("message") or {}
        self._tools_available(out, message.get("tool_calls") or [])
        out.append({"type": "finish-step"})
        status = event.get("status")
        metadata = self._metadata(status=status, usage=event.get("usage"))
        if status == "cancelled":
            out.append({"type": "abort", "reason": "cancelled"})
            out.append({"type": "finish", "finishReason": "other", "messageMetadata": metadata})
        else:
            reason = FINISH_REASONS.get(event.get("finish_reason") or "stop", "other")
            out.append({"type": "finish", "finishReason": reason, "messageMetadata": metadata})
        self.done = True

    def _failed(self, out: list[dict[str, Any]], event: dict[str, Any]) -> None:
        self._end_text(out)
        out.append({"type": "error", "errorText": error_text(event.get("error"), event.get("error_log"))})
        self.done = True


def ending(translator: Translator, run: dict[str, Any], reply: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The events that end a stream from its run's stored record, for a stream that missed them live.

    ``run``: the Run's ``uuid``, ``session_uuid``, ``status``, ``finish_reason``, ``error``, ``error_log``;
    ``reply``: its stored message's ``content`` and ``tool_calls`` (None when none was stored). The rest of the
    reply's text comes first when it extends what was sent.
    """
    base = {"session_uuid": run["session_uuid"], "run_id": run["uuid"], "seq": 0}
    out: list[dict[str, Any]] = []
    content = (reply or {}).get("content") or ""
    if len(content) > len(translator.text) and content.startswith(translator.text):
        out.append({**base, "type": events.TEXT_DELTA, "delta": content[len(translator.text) :]})
    if run["status"] in ("completed", "cancelled"):
        out.append(
            {
                **base,
                "type": events.RUN_COMPLETED,
                "status": run["status"],
                "message": reply,
                "usage": None,
                "finish_reason": run.get("finish_reason") or None,
            }
        )
    else:
        error = {"error": run.get("error") or "error", "error_log": run.get("error_log") or None}
        out.append({**base, "type": events.RUN_FAILED, "status": run["status"], **error})
    return out


async def closed(frames: AsyncIterator[bytes], translator: Translator) -> AsyncIterator[bytes]:
    """``frames``, then whatever closes the stream if they ended before the run's last event."""
    async for chunk in frames:
        yield chunk
    tail = translator.close()
    if tail:
        yield tail
