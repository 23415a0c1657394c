"""Run events as OpenAI's streams, for ``api.sse.RunPump(render=...)``.

The run is pumped to its end on a thread of its own (``chatmodel_app.api.sse``), so a client that hangs up
loses nothing; these renderers only turn each run event (``chatmodel_app.events``) into the frames of a
protocol. Each renderer belongs to one stream and is called in event order.

- ``ResponsesStream``: Responses' events, each with a ``sequence_number`` (response.created,
  response.in_progress, response.output_item.added, response.content_part.added, response.output_text.delta,
  response.function_call_arguments.delta ... done, response.output_item.done, then response.completed,
  response.incomplete (also a cancelled run, with status "cancelled") or response.failed).
- ``ChatCompletionStream``: ``data: {chat.completion.chunk}`` frames, then ``data: [DONE]``; a run that fails
  ends with ``data: {"error": {...}}``, which OpenAI's SDKs raise as ``APIError``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .. import events
from ..models import Run, Session
from . import errors, ids, items, objects

logger = logging.getLogger("chatmodel_app")


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


class ResponsesStream:
    """Renders one run's events as Responses' SSE events."""

    def __init__(self, *, session: Session, model: str, tools: list[dict[str, Any]] | None = None) -> None:
        self.session = session
        self.model = model
        self.tools = tools or []
        self.sequence = 0
        self.run_id = ""
        self.created_at = int(time.time())
        self.outputs: list[dict[str, Any]] = []
        self.text: list[str] | None = None  # the open message item's text
        self.message_index = -1
        self.calls: dict[int, dict[str, Any]] = {}  # stream index -> {"item", "output_index", "open"}
        self.ended = False

    # --- frames ---------------------------------------------------------------------------------------

    def _event(self, type_: str, **data: Any) -> str:
        body = {"type": type_, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return f"event: {type_}\ndata: {_json(body)}\n\n"

    def _skeleton(self, status: str) -> dict[str, Any]:
        return {
            "id": ids.response_id(self.run_id) if self.run_id else "resp_unknown",
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "model": self.model,
            "output": [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "conversation": {"id": ids.conversation_id(self.session.uuid)},
            "tool_choice": "auto",
            "tools": self.tools,
            "text": {"format": {"type": "text"}},
            "store": True,
            "usage": None,
            "metadata": {},
        }

    @property
    def _ref(self) -> str:
        return ids.message_ref(pk=0, role="assistant", run_uuid=self.run_id)

    # --- the renderer -----------------------------------------------------------------------------

    def __call__(self, event: dict[str, Any], response: Any = None) -> bytes:
        if self.ended:
            return b""
        kind = event.get("type")
        out: list[str] = []
        if kind == events.RUN_STARTED:
            self.run_id = event.get("run_id") or ""
            out.append(self._event("response.created", response=self._skeleton("in_progress")))
            out.append(self._event("response.in_progress", response=self._skeleton("in_progress")))
        elif kind == events.TEXT_DELTA:
            out += self._text_delta(event.get("delta") or "")
        elif kind == events.TOOL_CALL_DELTA:
            for delta in event.get("deltas") or ():
                out += self._call_delta(delta)
        elif kind in (events.RUN_COMPLETED, events.RUN_FAILED):
            out += self._end(event)
        return "".join(out).encode()

    def _text_delta(self, delta: str) -> list[str]:
        out = []
        if self.text is None:
            self.text = []
            self.message_index = len(self.outputs)
            item = items.message_item(self._ref, role="assistant", text="", status="in_progress")
            item["content"] = []
            self.outputs.append(item)
            out.append(self._event("response.output_item.added", output_index=self.message_index, item=item))
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self.message_index,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        self.text.append(delta)
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=f"msg_{self._ref}",
                output_index=self.message_index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return out

    def _close_text(self, status: str) -> list[str]:
        if self.text is None:
            return []
        text, self.text = "".join(self.text), None
        item_id = f"msg_{self._ref}"
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = items.message_item(self._ref, role="assistant", text=text, status=status)
        self.outputs[self.message_index] = item
        where = {"item_id": item_id, "output_index": self.message_index, "content_index": 0}
        return [
            self._event("response.output_text.done", **where, text=text, logprobs=[]),
            self._event("response.content_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=self.message_index, item=item),
        ]

    def _call_delta(self, delta: dict[str, Any]) -> list[str]:
        out = []
        index = int(delta.get("index") or 0)
        call = self.calls.get(index)
        if call is None:
            # The reply's text is over once its function calls begin.
            out += self._close_text("completed")
            item = items.function_call_item(
                self._ref,
                index,
                call_id=delta.get("id") or "",
                name=delta.get("name") or "",
                arguments="",
                status="in_progress",
            )
            call = {"item": item, "output_index": len(self.outputs)}
            self.calls[index] = call
            self.outputs.append(item)
            out.append(self._event("response.output_item.added", output_index=call["output_index"], item=dict(item)))
        item = call["item"]
        if delta.get("id") and not item["call_id"]:
            item["call_id"] = delta["id"]
        if delta.get("name") and not item["name"]:
            item["name"] = delta["name"]
        if delta.get("arguments"):
            item["arguments"] += delta["arguments"]
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=call["output_index"],
                    delta=delta["arguments"],
                )
            )
        return out

    def _end(self, event: dict[str, Any]) -> list[str]:
        self.ended = True
        status = event.get("status") or "failed"
        item_status = "completed" if status == Run.Status.COMPLETED else "incomplete"
        out = self._close_text(item_status)
        for call in self.calls.values():
            item = dict(call["item"], status=item_status)
            where = {"item_id": item["id"], "output_index": call["output_index"]}
            out.append(
                self._event(
                    "response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"]
                )
            )
            out.append(self._event("response.output_item.done", output_index=call["output_index"], item=item))
        final = self._final(event)
        kind = {"completed": "response.completed", "failed": "response.failed"}.get(
            final["status"], "response.incomplete"
        )
        out.append(self._event(kind, response=final))
        return out

    def _final(self, event: dict[str, Any]) -> dict[str, Any]:
        """The finished Response as stored (the same object ``GET /v1/responses/<id>`` gives)."""
        if self.run_id:
            try:
                run = Run.objects.select_related("version__chat_model").get(uuid=self.run_id)
                return objects.response_object(run, session=self.session, tools=self.tools)
            except Exception:  # the stream must end whatever the database says
                logger.exception("chatmodel openai door: could not read run %s", self.run_id)
        final = self._skeleton(event.get("status") or "failed")
        final["output"] = self.outputs
        if event.get("type") == events.RUN_FAILED:
            final["status"] = "failed" if event.get("status") in (None, "failed") else event["status"]
            final["error"] = {"code": event.get("error") or "error", "message": event.get("error_log") or ""}
        return final


class ChatCompletionStream:
    """Renders one run's events as ``chat.completion.chunk`` frames."""

    def __init__(self, *, model: str, include_usage: bool = False) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = ""
        self.created = int(time.time())
        self.saw_calls = False
        self.ended = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {_json(body)}\n\n"

    def __call__(self, event: dict[str, Any], response: Any = None) -> bytes:
        if self.ended:
            return b""
        kind = event.get("type")
        out: list[str] = []
        if kind == events.RUN_STARTED:
            self.id = ids.chat_completion_id(event["run_id"])
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif kind == events.TEXT_DELTA:
            out.append(self._chunk({"content": event.get("delta") or ""}))
        elif kind == events.TOOL_CALL_DELTA:
            self.saw_calls = True
            calls = []
            for delta in event.get("deltas") or ():
                call: dict[str, Any] = {"index": int(delta.get("index") or 0)}
                function: dict[str, Any] = {"arguments": delta.get("arguments") or ""}
                if delta.get("id"):
                    call.update(id=delta["id"], type="function")
                if delta.get("name"):
                    function["name"] = delta["name"]
                call["function"] = function
                calls.append(call)
            out.append(self._chunk({"tool_calls": calls}))
        elif kind == events.RUN_COMPLETED:
            self.ended = True
            finish = objects.chat_finish_reason(event.get("finish_reason"), tool_calls=self.saw_calls)
            out.append(self._chunk({}, finish))
            if self.include_usage:
                usage = event.get("usage") or {}
                prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
                body = {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                    },
                }
                out.append(f"data: {_json(body)}\n\n")
            out.append("data: [DONE]\n\n")
        elif kind == events.RUN_FAILED:
            self.ended = True
            code = event.get("error") or "error"
            body = errors.error_body(event.get("error_log") or code, status=500, code=code)
            out.append(f"data: {_json(body)}\n\n")
        return "".join(out).encode()
