"""Run events -> UI message stream parts: the exact frames a client reads."""

from __future__ import annotations

import json

from chatmodel_app.ai_sdk.wire import DONE, Translator

RUN = "6f1c2d9e-0000-4000-8000-000000000001"
SESSION = "6f1c2d9e-0000-4000-8000-0000000000aa"


def event(kind: str, seq: int, **data) -> dict:
    return {"type": kind, "session_uuid": SESSION, "run_id": RUN, "seq": seq, **data}


def parts(data: bytes) -> list:
    out = []
    for block in data.decode().split("\n\n"):
        if block.startswith("data: "):
            body = block[len("data: ") :]
            out.append(body if body == "[DONE]" else json.loads(body))
    return out


def feed(translator: Translator, *evs: dict) -> list:
    return parts(b"".join(translator(e) for e in evs))


META = {"sessionId": SESSION, "runId": RUN}


def test_a_text_reply_is_start_text_parts_finish_and_done():
    got = feed(
        Translator(),
        event("run.started", 1, stream=True, model="offline/demo", version=1),
        event("run.delta", 2, delta="Hel"),
        event("run.delta", 3, delta="lo"),
        event("run.completed", 4, status="completed", message={"content": "Hello"}, usage=None, finish_reason="stop"),
    )
    assert got == [
        {"type": "start", "messageId": RUN, "messageMetadata": META},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-0"},
        {"type": "text-delta", "id": "text-0", "delta": "Hel"},
        {"type": "text-delta", "id": "text-0", "delta": "lo"},
        {"type": "text-end", "id": "text-0"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop", "messageMetadata": {**META, "status": "completed", "usage": None}},
        "[DONE]",
    ]


def test_tool_calls_stream_their_input_and_end_with_it_parsed():
    translator = Translator()
    got = feed(
        translator,
        event("run.started", 1),
        event("run.delta", 2, delta="Let me look."),
        # The name comes after the first delta of the call: tool-input-start waits for it.
        event("run.tool_call_delta", 3, deltas=[{"index": 0, "id": "call_1", "name": None, "arguments": ""}]),
        event("run.tool_call_delta", 4, deltas=[{"index": 0, "id": None, "name": "get_weather", "arguments": '{"lo'}]),
        event(
            "run.tool_call_delta", 5, deltas=[{"index": 0, "id": None, "name": None, "arguments": 'cation": "Oslo"}'}]
        ),
        event(
            "run.completed",
            6,
            status="completed",
            message={"tool_calls": [{"id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}]},
            usage={"prompt_tokens": 3},
            finish_reason="tool_calls",
        ),
    )
    types = [p["type"] if isinstance(p, dict) else p for p in got]
    assert types == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert got[5] == {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "get_weather"}
    assert got[6] == {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"lo'}
    assert got[8] == {
        "type": "tool-input-available",
        "toolCallId": "call_1",
        "toolName": "get_weather",
        "input": {"location": "Oslo"},
    }
    assert got[10]["finishReason"] == "tool-calls"


def test_arguments_that_are_not_json_end_as_tool_input_error():
    got = feed(
        Translator(),
        event("run.started", 1),
        event("run.tool_call_delta", 2, deltas=[{"index": 0, "id": "c", "name": "f", "arguments": "{oops"}]),
        event("run.completed", 3, status="completed", message=None, usage=None, finish_reason="tool_calls"),
    )
    error = next(p for p in got if isinstance(p, dict) and p["type"] == "tool-input-error")
    assert error["toolCallId"] == "c" and error["input"] == "{oops" and error["errorText"]


def test_a_cancelled_run_ends_with_abort_then_finish():
    got = feed(
        Translator(),
        event("run.started", 1),
        event("run.delta", 2, delta="Part"),
        event("run.completed", 3, status="cancelled", message={"content": "Part"}, usage=None, finish_reason=None),
    )
    assert got[-4:] == [
        {"type": "finish-step"},
        {"type": "abort", "reason": "cancelled"},
        {"type": "finish", "finishReason": "other", "messageMetadata": {**META, "status": "cancelled", "usage": None}},
        "[DONE]",
    ]


def test_a_failed_run_closes_its_text_and_sends_error_then_done_and_nothing_after():
    translator = Translator()
    got = feed(
        translator,
        event("run.started", 1),
        event("run.delta", 2, delta="Hal"),
        event("run.failed", 3, status="failed", error="rate_limit", error_log="The provider said: slow down."),
    )
    assert got[-3:] == [
        {"type": "text-end", "id": "text-0"},
        {"type": "error", "errorText": "rate_limit: The provider said: slow down."},
        "[DONE]",
    ]
    assert translator(event("run.delta", 4, delta="late")) == b""
    assert translator.close() == b""


def test_a_refusal_before_any_run_is_only_an_error():
    failed = {"type": "run.failed", "session_uuid": "", "run_id": None, "seq": 1, "error": "internal_error"}
    assert feed(Translator(), failed) == [{"type": "error", "errorText": "internal_error"}, "[DONE]"]


def test_a_resumed_stream_replays_the_snapshot_then_goes_on_live():
    snapshot = {
        "type": "run.snapshot",
        "session_uuid": SESSION,
        "run_id": RUN,
        "seq": 7,
        "status": "in_progress",
        "content": "You said: a b",
        "tool_call_deltas": [],
        "model": "offline/demo",
    }
    got = feed(
        Translator(),
        snapshot,
        event("run.delta", 8, delta=" c"),
        event("run.completed", 9, status="completed", message={"content": "You said: a b c"}, usage=None),
    )
    assert got[:5] == [
        {"type": "start", "messageId": RUN, "messageMetadata": META},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-0"},
        {"type": "text-delta", "id": "text-0", "delta": "You said: a b"},
        {"type": "text-delta", "id": "text-0", "delta": " c"},
    ]
    assert got[-1] == DONE.decode().strip()[len("data: ") :]


def test_close_ends_a_stream_that_stopped_before_its_run_did():
    translator = Translator()
    translator(event("run.started", 1))
    translator(event("run.delta", 2, delta="x"))
    assert parts(translator.close()) == [
        {"type": "text-end", "id": "text-0"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "other", "messageMetadata": META},
        "[DONE]",
    ]


def test_a_run_that_continues_a_reply_keeps_that_replys_message_id():
    got = feed(Translator(message_id="reply-1"), event("run.started", 1))
    assert got[0] == {"type": "start", "messageId": "reply-1", "messageMetadata": META}


def test_ending_from_the_stored_record_sends_the_rest_of_the_reply_then_the_end():
    from chatmodel_app.ai_sdk.wire import ending

    translator = Translator()
    feed(translator, event("run.started", 1), event("run.delta", 2, delta="You said: a"))
    run = {"uuid": RUN, "session_uuid": SESSION, "status": "completed", "finish_reason": "stop"}
    got = feed(translator, *ending(translator, run, {"content": "You said: a b", "tool_calls": None}))
    assert got == [
        {"type": "text-delta", "id": "text-0", "delta": " b"},
        {"type": "text-end", "id": "text-0"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop", "messageMetadata": {**META, "status": "completed", "usage": None}},
        "[DONE]",
    ]
    failed = Translator()
    feed(failed, event("run.started", 1))
    run = {"uuid": RUN, "session_uuid": SESSION, "status": "failed", "error": "timeout", "error_log": "Too slow."}
    assert feed(failed, *ending(failed, run, None)) == [{"type": "error", "errorText": "timeout: Too slow."}, "[DONE]"]
