"""Server-Sent Event lines to chunks, as both HTTP drivers read them."""

from __future__ import annotations

import json

from chatmodel_app.transports.sse import SSEReader

SESSION = "3f2c1a3e-0000-4000-8000-000000000001"


def feed(reader, *events, comment=False):
    chunks = []
    for event in events:
        lines = [": keepalive", ""] if comment else []
        lines += [f"id: r1:{event.get('seq', 0)}", f"event: {event['type']}", f"data: {json.dumps(event)}", ""]
        chunks += [c for c in map(reader.line, lines) if c is not None]
    return chunks


def test_deltas_and_the_completed_event_make_the_chunks_of_a_run():
    reader = SSEReader(SESSION)
    completed = {
        "type": "run.completed",
        "run_id": "r1",
        "response": {
            "content": "Hello",
            "error": False,
            "status": "completed",
            "message_seq": 2,
            "session_uuid": SESSION,
            "run_uuid": "r1",
        },
    }
    chunks = feed(
        reader,
        {"type": "run.started", "run_id": "r1"},
        {"type": "run.delta", "run_id": "r1", "delta": "Hel"},
        {"type": "run.delta", "run_id": "r1", "delta": "lo"},
        completed,
        comment=True,
    )
    assert [c.content for c in chunks] == ["Hel", "lo", ""]
    final = chunks[-1]
    assert final.is_final and not final.error and final.status == "completed" and final.message_seq == 2
    assert final.run_uuid == "r1" and final.session_uuid == SESSION and final.api_response == completed
    assert reader.deltas == 2 and reader.finished


def test_a_data_field_over_several_lines_is_one_event():
    reader = SSEReader(SESSION)
    lines = ['data: {"type": "run.delta",', 'data: "delta": "x", "run_id": "r2"}', ""]
    chunks = [c for c in map(reader.line, lines) if c is not None]
    assert [(c.content, c.run_uuid) for c in chunks] == [("x", "r2")]


def test_a_failed_run_without_a_response_ends_with_its_error():
    chunks = feed(SSEReader(SESSION), {"type": "run.failed", "run_id": "r1", "error": "timeout", "error_log": "slow"})
    assert len(chunks) == 1 and chunks[0].is_final and chunks[0].error
    assert (chunks[0].error_code, chunks[0].error_log, chunks[0].run_uuid) == ("timeout", "slow", "r1")


def test_tool_call_deltas_are_passed_on():
    deltas = [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{"}}]
    (chunk,) = feed(SSEReader(SESSION), {"type": "run.tool_call_delta", "run_id": "r1", "deltas": deltas})
    assert chunk.content == "" and chunk.tool_call_deltas == deltas and not chunk.is_final


def test_undecodable_data_is_skipped():
    reader = SSEReader(SESSION)
    assert [reader.line(line) for line in ["data: {not json", ""]] == [None, None]
    assert reader.data == [] and not reader.finished
