"""The HTTP transport's pieces: its per-loop connection pools, its stream state machine, its arguments."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from chatmodel_app import ChatModel
from chatmodel_app.exceptions import (
    ChatModelNotFound,
    InvalidParams,
    RemoteError,
    RequestTooLarge,
    SessionBusy,
    SessionNotFound,
)
from chatmodel_app.testing import refused_url
from chatmodel_app.transports import http
from chatmodel_app.transports.http import HttpTransport, StreamRun

BASE = "http://127.0.0.1:9/"
SESSION = "3f2c1a3e-0000-4000-8000-000000000001"


async def client_of_this_loop() -> httpx.AsyncClient:
    return await http._async_client(BASE, "k", http.DEFAULT_TIMEOUT)


def test_a_client_of_a_closed_loop_is_not_reused():
    first_loop = asyncio.new_event_loop()
    first = first_loop.run_until_complete(client_of_this_loop())
    first_loop.close()  # closed without shutting its async generators down, so nothing closed its client
    second_loop = asyncio.new_event_loop()
    try:
        second = second_loop.run_until_complete(client_of_this_loop())
        assert second is not first and not second.is_closed
        assert first_loop not in http._loop_clients
        assert second_loop.run_until_complete(client_of_this_loop()) is second  # reused within its own loop
    finally:
        second_loop.run_until_complete(second_loop.shutdown_asyncgens())
        second_loop.close()
    assert second.is_closed


def test_asyncio_run_closes_the_clients_of_its_loop():
    async def twice():
        return await client_of_this_loop(), await client_of_this_loop()

    one, two = asyncio.run(twice())
    assert one is two and one.is_closed
    assert not list(http._loop_clients)


def test_a_malformed_session_uuid_is_refused_at_construction():
    with pytest.raises(InvalidParams, match="session_uuid must be a UUID") as caught:
        ChatModel("simple_assistant", "not-a-uuid", base_url=refused_url(), api_key="k")
    assert isinstance(caught.value, ValueError) and caught.value.code == "invalid_params"


def test_a_session_uuid_in_another_spelling_is_used_in_its_canonical_form():
    model = ChatModel("simple_assistant", uuid.UUID(SESSION).hex.upper(), base_url=refused_url(), api_key="k")
    assert model.session_uuid == SESSION
    assert ChatModel("simple_assistant", uuid.UUID(SESSION), base_url=refused_url()).session_uuid == SESSION


def response(status, body=None, content_type="application/json"):
    content = body if isinstance(body, bytes) else httpx.Response(200, json=body).content
    return httpx.Response(status, content=content, headers={"Content-Type": content_type})


def test_stream_run_reads_a_json_answer_as_the_final_chunk():
    run = StreamRun(SESSION, BASE)
    final = run.feed(response(409, {"detail": "A run is in progress.", "code": "session_busy"}))
    assert final.is_final and final.error and final.error_code == "session_busy"
    assert final.error_log == "HTTP 409: A run is in progress."


def test_stream_run_tells_a_connection_failure_from_a_cut_stream():
    request = httpx.Request("POST", BASE)
    failed = StreamRun(SESSION, BASE).feed(httpx.ConnectError("refused", request=request))
    assert failed.error_code == "connection_error" and f"Could not connect to {BASE}" in failed.error_log

    run = StreamRun(SESSION, BASE)
    assert run.feed(response(200, b"", "text/event-stream")) is None
    for line in ['data: {"type": "run.delta", "run_id": "r1", "delta": "Hel"}', ""]:
        delta = run.feed(line)
    assert delta.content == "Hel" and delta.run_uuid == "r1" and not delta.is_final
    cut = run.feed(httpx.ReadTimeout("read timed out", request=request))
    assert cut.is_final and cut.error_code == "stream_cut" and "1 deltas" in cut.error_log and cut.run_uuid == "r1"
    closed = StreamRun(SESSION, BASE).feed(http._CLOSED)
    assert closed.error_code == "stream_cut" and "the connection closed" in closed.error_log


def test_stream_run_passes_a_refusal_on_as_the_final_chunk():
    final = StreamRun(SESSION, BASE).feed(RemoteError("HTTP 401: Invalid token.", code="authentication_failed"))
    assert final.is_final and final.error_code == "authentication_failed" and final.session_uuid == SESSION


def test_run_request_sends_functions_tools_and_params_as_given():
    transport = HttpTransport("bot", SESSION, "deploy", base_url=BASE.rstrip("/"), api_key=None)
    plain = transport._run_request(None, None, {"temperature": 0.2}, stream=False)
    assert plain["url"] == f"api/sessions/{SESSION}/run/" and plain["method"] == "POST"
    assert plain["json"] == {"stream": False, "temperature": 0.2} and plain["headers"] is None
    streamed = transport._run_request([{"name": "f"}], [], {}, stream=True)
    assert streamed["json"] == {"stream": True, "functions": [{"name": "f"}], "tools": []}
    assert streamed["headers"] == {"Accept": "text/event-stream"}


@pytest.mark.parametrize(
    ("status", "code", "exception"),
    [
        (404, "chat_model_not_found", ChatModelNotFound),
        (404, "session_not_found", SessionNotFound),
        (413, "request_too_large", RequestTooLarge),
        (409, "session_exists", SessionBusy),  # a code of no exception: a 409 is still a busy session
        (401, "authentication_failed", RemoteError),
    ],
)
def test_an_error_answer_raises_the_exception_of_its_code(status, code, exception):
    with pytest.raises(exception, match=f"HTTP {status}: refused") as caught:
        http._raise_for(response(status, {"detail": "refused", "code": code}))
    assert caught.value.code == code
