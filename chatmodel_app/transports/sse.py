"""Server-Sent Events to stream chunks: the parsing both HTTP drivers feed, line by line.

Plain Python (no httpx, no Django): it sees only text lines, so the sync and async readers
share every rule about what an event means.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from ..types import LLMResponse, LLMStreamResponse


def final_error(code: str, log: str, session_uuid: str, run_uuid: str | None = None) -> LLMStreamResponse:
    """The final chunk of a stream that failed."""
    return LLMStreamResponse(
        content="",
        error=True,
        error_code=code,
        error_log=log,
        session_uuid=session_uuid,
        run_uuid=run_uuid,
        is_final=True,
    )


def _final(data: Mapping[str, Any], api_response: Any) -> LLMStreamResponse:
    # from_dict is typed on LLMResponse; called on the subclass it builds the subclass.
    chunk = cast(LLMStreamResponse, LLMStreamResponse.from_dict({**data, "content": "", "is_final": True}))
    chunk.api_response = api_response
    return chunk


def as_final(response: LLMResponse) -> LLMStreamResponse:
    """A whole response as the final chunk of a stream (the server answered without streaming)."""
    return _final(response.to_dict(), response.api_response)


class SSEReader:
    """Turns Server-Sent Event lines into stream chunks."""

    def __init__(self, session_uuid: str) -> None:
        self.session_uuid = session_uuid
        self.event_type: str | None = None
        self.data: list[str] = []
        self.run_uuid: str | None = None
        self.deltas = 0
        self.finished = False

    def line(self, line: str) -> LLMStreamResponse | None:
        """Feed one line; return a chunk when an event completes it."""
        if line.startswith(":"):
            return None  # keep-alive comment
        if line:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                self.event_type = value
            elif field == "data":
                self.data.append(value)
            return None
        if not self.data:
            return None
        try:
            event = json.loads("\n".join(self.data))
        except ValueError:
            event = {"type": "error"}
        self.data, self.event_type = [], None
        return self.chunk(event)

    def chunk(self, event: dict[str, Any]) -> LLMStreamResponse | None:
        """The chunk one decoded event stands for (None for events a caller does not see)."""
        kind = event.get("type")
        self.run_uuid = event.get("run_id") or self.run_uuid
        if kind == "run.delta":
            self.deltas += 1
            return self._progress(event, content=event.get("delta", ""))
        if kind == "run.snapshot":
            # A rejoined run: everything it said so far, as one chunk (its deltas up to the snapshot's seq).
            self.deltas += 1
            return self._progress(
                event, content=event.get("content") or "", tool_call_deltas=event.get("tool_call_deltas") or None
            )
        if kind == "run.tool_call_delta":
            return self._progress(event, content="", tool_call_deltas=event.get("deltas"))
        if kind in ("run.completed", "run.failed"):
            self.finished = True
            if isinstance(event.get("response"), dict):
                # api_response: the server's terminal event (the provider's object stays there).
                final = _final(event["response"], event)
                final.events = [event]
                return final
            if kind == "run.completed":
                # A rejoined run's end (the events endpoint): the stored message stands for the response.
                message = event.get("message") or {}
                final = _final(
                    {
                        "content": message.get("content"),
                        "tool_calls": message.get("tool_calls"),
                        "status": event.get("status"),
                        "usage": event.get("usage"),
                        "cost": event.get("cost"),
                        "finish_reason": event.get("finish_reason"),
                        "session_uuid": self.session_uuid,
                        "run_uuid": self.run_uuid,
                        "message_id": message.get("id"),
                        "message_seq": message.get("seq"),
                    },
                    event,
                )
                final.events = [event]
                return final
            return final_error(
                event.get("error") or "run_failed", event.get("error_log") or "", self.session_uuid, self.run_uuid
            )
        return None

    def _progress(self, event: dict[str, Any], **fields: Any) -> LLMStreamResponse:
        return LLMStreamResponse(
            status="in_progress", session_uuid=self.session_uuid, run_uuid=self.run_uuid, events=[event], **fields
        )

    def cut(self, reason: str) -> LLMStreamResponse:
        """The final chunk of a stream that ended before the run did."""
        return final_error(
            "stream_cut",
            f"The server's event stream ended before the run finished ({reason}; {self.deltas} deltas received). "
            "The run may still have completed on the server: get_config().message_logs shows what was stored.",
            self.session_uuid,
            self.run_uuid,
        )
