"""The websocket against a real daphne process serving the example project, driven by the ``websockets`` client.

A run started over REST (streamed, as Server-Sent Events) reaches every socket watching the
session, in order, and what the sockets saw is what was stored.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from .live import Worker, live_site

WORDS = " ".join(f"word{i}" for i in range(30))


class Server:
    """A daphne process serving the example project, and the REST calls the tests make to it."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.token = worker.token
        self.http = worker.http

    def ws(self, session_uuid: str) -> str:
        return self.worker.ws_url(session_uuid)

    def socket(self, session_uuid: str):
        # Not a browser, so the token goes in a header; the Origin header is what AllowedHostsOriginValidator checks.
        return self.worker.socket(session_uuid)

    def request(self, method: str, path: str, body: dict | None = None, accept: str = "application/json"):
        """(status, body bytes) of a REST call with the token."""
        with self.worker.client(timeout=20) as client:
            response = client.request(method, path, json=body, headers={"Accept": accept})
            return response.status_code, response.content


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Its own database (a new PostgreSQL database in the PostgreSQL run) and Redis database number.
    env = {"CHATMODEL_OFFLINE_TOKEN_DELAY": "0.02"}  # spreads the words out in time; nothing depends on it
    with live_site(tmp_path_factory.mktemp("ws-live"), redis_db=13, env=env) as site:
        (worker,) = site.start("daphne")
        yield Server(worker)


async def _until(ws, *types, timeout=60.0):
    """Every event received up to and including the first whose type is in ``types``."""
    received = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            received.append(event)
            if event["type"] in types:
                return received


def _sse_events(body: bytes) -> list[dict]:
    return [
        json.loads(line[len("data: ") :])
        for block in body.decode().split("\n\n")
        for line in block.splitlines()
        if line.startswith("data: ")
    ]


async def _new_session(server: Server) -> str:
    status, body = await asyncio.to_thread(server.request, "POST", "/api/chat-models/simple_assistant/sessions/", {})
    assert status == 201, body
    return json.loads(body)["uuid"]


async def test_two_sockets_see_a_rest_run_live_and_in_order(server):
    session_uuid = await _new_session(server)
    async with server.socket(session_uuid) as first, server.socket(session_uuid) as second:
        status, body = await asyncio.to_thread(
            server.request,
            "POST",
            f"/api/sessions/{session_uuid}/messages/",
            {"messages": [{"role": "user", "content": WORDS}]},
        )
        assert status == 201, body
        for ws in (first, second):
            added = (await _until(ws, "messages.added"))[-1]
            assert added["messages"][0]["content"] == WORDS

        # A streamed REST run (SSE), started while both sockets watch.
        rest = asyncio.create_task(
            asyncio.to_thread(
                server.request,
                "POST",
                f"/api/sessions/{session_uuid}/run/",
                {"stream": True},
                accept="text/event-stream",
            )
        )
        seen_first = await _until(first, "run.completed", "run.failed")
        seen_second = await _until(second, "run.completed", "run.failed")
        status, sse_body = await rest
    assert status == 200

    assert seen_first == seen_second
    types = [e["type"] for e in seen_first]
    assert types[0] == "run.started" and types[-1] == "run.completed"
    deltas = [e for e in seen_first if e["type"] == "run.delta"]
    assert len(deltas) == 32  # "You said:" and the 30 words, one chunk each
    assert [e["seq"] for e in seen_first] == list(range(1, len(seen_first) + 1))
    assert {e["run_id"] for e in seen_first} == {seen_first[0]["run_id"]}
    streamed = "".join(e["delta"] for e in deltas)

    status, body = await asyncio.to_thread(server.request, "GET", f"/api/sessions/{session_uuid}/messages/")
    assert status == 200
    stored = json.loads(body)["results"][-1]
    assert stored["role"] == "assistant" and stored["run_id"] == seen_first[0]["run_id"]
    assert streamed == stored["content"] == seen_first[-1]["message"]["content"] == f"You said: {WORDS}"
    # The REST caller's Server-Sent Events are the same events.
    assert [(e["type"], e["seq"]) for e in _sse_events(sse_body)] == [(e["type"], e["seq"]) for e in seen_first]


async def test_a_run_started_by_one_socket_streams_to_the_others(server):
    session_uuid = await _new_session(server)
    async with (
        server.socket(session_uuid) as driver,
        server.socket(session_uuid) as watcher,
        server.socket(session_uuid) as other,
    ):
        await driver.send(json.dumps({"type": "add_messages", "messages": [{"role": "user", "content": "Hello"}]}))
        await _until(driver, "messages.added")
        await driver.send(json.dumps({"type": "run", "stream": True}))
        seen = [await _until(ws, "run.completed", "run.failed") for ws in (driver, watcher, other)]
        # The watchers also saw the driver's messages.added; the run's events are the same for all three.
        run_id = seen[0][-1]["run_id"]
        seen = [[e for e in events if e["run_id"] == run_id] for events in seen]
        # A frame of nonsense gets an error event, not a close.
        await watcher.send("{nonsense")
        assert json.loads(await watcher.recv())["code"] == "invalid_json"
    assert seen[0] == seen[1] == seen[2]
    text = "".join(e["delta"] for e in seen[0] if e["type"] == "run.delta")
    assert text == seen[0][-1]["message"]["content"] == "Hello! What can I help you with?"


async def test_refused_sockets_fail_the_handshake(server):
    from websockets.exceptions import InvalidStatus

    session_uuid = await _new_session(server)
    attempts = {
        "no credentials": connect(server.ws(session_uuid), origin=server.http, open_timeout=10),
        "foreign origin": connect(
            server.ws(session_uuid),
            additional_headers={"Authorization": f"Token {server.token}"},
            origin="http://evil.example.net",
            open_timeout=10,
        ),
        "unknown session": server.socket("0b7d1e36-9c1f-4a51-9c8a-1d2f3e4a5b6c"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(InvalidStatus) as refused:
            async with attempt:
                pass
        assert refused.value.response.status_code == 403, name
