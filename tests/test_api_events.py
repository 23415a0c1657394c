"""Rejoining a live run over SSE (``GET /api/sessions/<uuid>/events/``) on a real ASGI server."""

from __future__ import annotations

import threading

import httpx
import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from chatmodel_app.models import Message
from tests.test_api_live import _asgi_application, _forget_inherited_connections, iter_sse, start_session, wait_for

WORDS = " ".join(f"w{i}" for i in range(40))


@pytest.fixture
def server(transactional_db, fake_key, fake_chat_model, fake_llm):
    from daphne.testing import DaphneProcess

    fake_chat_model("simple_assistant")
    fake_llm.token_delay = 0.04
    user = User.objects.create_user("alice")
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    process = DaphneProcess("127.0.0.1", _asgi_application, setup=_forget_inherited_connections)
    process.start()
    try:
        assert process.ready.wait(30), "daphne did not start"
        with httpx.Client(base_url=f"http://127.0.0.1:{process.port.value}", headers=headers, timeout=30) as client:
            yield client
    finally:
        process.terminate()
        process.join(10)


def _run_in_background(client: httpx.Client, session_uuid: str) -> threading.Thread:
    thread = threading.Thread(
        target=client.post, args=(f"/api/sessions/{session_uuid}/run/",), kwargs={"json": {"stream": True}}
    )
    thread.start()
    return thread


def _deltas(events: list[dict], after: int) -> str:
    return "".join(e["data"]["delta"] for e in events if e["event"] == "run.delta" and e["data"]["seq"] > after)


def test_events_is_204_without_a_run_and_streams_the_rest_of_a_live_one(server):
    session_uuid = start_session(server, WORDS)
    assert server.get(f"/api/sessions/{session_uuid}/events/").status_code == 204

    runner = _run_in_background(server, session_uuid)
    # Mid-run: the run has started (the session is held) before we join it.
    wait_for(lambda: server.get(f"/api/sessions/{session_uuid}/").json()["active_run_uuid"])
    with server.stream("GET", f"/api/sessions/{session_uuid}/events/") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = list(iter_sse(response.iter_lines()))
    runner.join(30)
    snapshot, rest = events[0], events[1:]
    assert snapshot["event"] == "run.snapshot" and rest[-1]["event"] == "run.completed"
    seq = snapshot["data"]["seq"]
    assert all(e["data"]["seq"] > seq for e in rest)
    reply = Message.objects.get(run__uuid=snapshot["data"]["run_id"])
    assert snapshot["data"]["content"] + _deltas(rest, seq) == reply.content == f"Echo: {WORDS}"


def test_a_reconnect_with_last_event_id_gets_only_what_it_missed(server):
    session_uuid = start_session(server, WORDS)
    runner = _run_in_background(server, session_uuid)
    wait_for(lambda: server.get(f"/api/sessions/{session_uuid}/").json()["active_run_uuid"])
    with server.stream("GET", f"/api/sessions/{session_uuid}/events/") as response:
        lines = iter_sse(response.iter_lines())
        snapshot = next(lines)
        first_live = next(lines)  # then the connection drops
    assert first_live["event"] == "run.delta"
    headers = {"Last-Event-ID": first_live["id"]}
    with server.stream("GET", f"/api/sessions/{session_uuid}/events/", headers=headers) as response:
        assert response.status_code == 200
        resumed = list(iter_sse(response.iter_lines()))
    runner.join(30)
    have_seq = first_live["data"]["seq"]
    have_text = snapshot["data"]["content"] + _deltas([first_live], snapshot["data"]["seq"])
    if resumed[0]["event"] == "run.snapshot":
        # The run moved on while we were away: a fresh snapshot replaces what we had (it starts with it).
        again = resumed[0]["data"]
        assert again["seq"] > have_seq and again["content"].startswith(have_text)
        have_seq, have_text, resumed = again["seq"], again["content"], resumed[1:]
    assert all(e["data"]["seq"] > have_seq for e in resumed) and resumed[-1]["event"] == "run.completed"
    assert have_text + _deltas(resumed, have_seq) == f"Echo: {WORDS}"  # no gap, nothing twice


def test_the_http_shim_rejoins_a_run_in_progress(server):
    from chatmodel_app import ChatModel

    session_uuid = start_session(server, WORDS)
    token = server.headers["Authorization"].split()[1]
    remote = ChatModel("simple_assistant", session_uuid, base_url=str(server.base_url), api_key=token)
    assert list(remote.rejoin()) == []  # nothing running

    runner = _run_in_background(server, session_uuid)
    wait_for(lambda: server.get(f"/api/sessions/{session_uuid}/").json()["active_run_uuid"])
    chunks = list(remote.rejoin())
    runner.join(30)
    final = chunks[-1]
    assert final.is_final and not final.error, final.error_log
    assert final.status == "completed" and final.message_id is not None
    assert "".join(c.content for c in chunks) == f"Echo: {WORDS}"
