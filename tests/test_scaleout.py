"""Scale-out: several ASGI workers of the example project (daphne and uvicorn) on one PostgreSQL database and
one Redis channel layer, driven over HTTP and websockets as clients would.

These tests are marked ``scaleout``: ``make test-postgres`` runs them (with ``DATABASE_URL`` and ``REDIS_URL``
set, failing when either is unreachable), ``make test`` deselects them (``-m "not scaleout"``). By hand:
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 pytest -m scaleout``.

The last test is not multi-process: it checks, in process and on both back ends, the rule that makes a
stalled worker harmless (an expired claim taken over by ``add_messages`` fences the old run out).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest

from .live import Site, Worker, is_postgres, iter_sse, live_site

# Starting three workers (each importing litellm for its first run) can take minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(300)

# Short, so the SIGKILL test waits little; E002 wants the lease longer than the model timeout.
LEASE_SECONDS = 5
# Seconds between the offline model's streamed words: a run on LONG_TEXT lasts about 3 s.
TOKEN_DELAY = 0.05
LONG_TEXT = " ".join(f"word{i}" for i in range(60))
REPLY = f"You said: {LONG_TEXT}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    assert is_postgres(database_url) and redis_url, (
        "The scale-out tests need PostgreSQL and Redis: run them with `make test-postgres` (or set "
        "DATABASE_URL=postgres://... and REDIS_URL=redis://...); `make test` deselects them with -m 'not scaleout'."
    )
    env = {
        "CHATMODEL_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
        "CHATMODEL_TIMEOUT": "2",
        # The lease must outlast TIMEOUT x (NUM_RETRIES + 1) (check E002); the offline model never retries.
        "CHATMODEL_NUM_RETRIES": "0",
        "CHATMODEL_OFFLINE_TOKEN_DELAY": str(TOKEN_DELAY),
    }
    with live_site(tmp_path_factory.mktemp("scaleout"), redis_db=14, env=env) as site:
        yield site


@pytest.fixture(scope="module")
def workers(site: Site) -> tuple[Worker, Worker, Worker]:
    """Workers A (daphne) and B (uvicorn), and C (daphne) for the SIGKILL test; each warmed up by one run."""
    started = site.start("daphne", "uvicorn", "daphne")
    # The first run of a worker waits for litellm to load: do it now, for all three at once.
    with ThreadPoolExecutor(len(started)) as pool:
        for worker, reply in zip(started, pool.map(_warm_up, started), strict=True):
            assert reply["content"] == "Hello! What can I help you with?", (reply, worker.log_text())
    return tuple(started)


def _warm_up(worker: Worker) -> dict:
    # The first run of a worker imports litellm (seconds; more on a busy 2-core machine).
    with worker.client(timeout=120) as client:
        session_uuid = _session(client, "Hello")
        response = client.post(f"/api/sessions/{session_uuid}/run/", json={})
        assert response.status_code == 200, response.text
        return response.json()


def _session(client: httpx.Client, text: str | None = None) -> str:
    """A new session of simple_assistant (with one user message)."""
    created = client.post("/api/chat-models/simple_assistant/sessions/", json={})
    assert created.status_code == 201, created.text
    session_uuid = created.json()["uuid"]
    if text is not None:
        added = client.post(
            f"/api/sessions/{session_uuid}/messages/", json={"messages": [{"role": "user", "content": text}]}
        )
        assert added.status_code == 201, added.text
    return session_uuid


def _history(worker: Worker, session_uuid: str) -> list[dict]:
    """Every stored message of the session, in seq order, read a page at a time."""
    messages: list[dict] = []
    with worker.client() as client:
        url = f"/api/sessions/{session_uuid}/messages/?limit=200"
        while url:
            page = client.get(url)
            assert page.status_code == 200, page.text
            messages += page.json()["results"]
            url = page.json()["next"]
    return messages


def _session_row_id(site: Site, session_uuid: str) -> int:
    return site.query("SELECT id FROM chatmodel_app_session WHERE uuid = %s", (session_uuid,))[0][0]


async def _until(ws, *types: str, timeout: float = 20.0) -> list[dict]:
    """Every event received up to and including the first whose type is in ``types``."""
    received = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            received.append(event)
            if event["type"] in types:
                return received


def _sse_run(worker: Worker, session_uuid: str) -> tuple[int, list[dict]]:
    """A streamed run over REST: (status, the events received)."""
    with worker.client() as client:
        response = client.post(f"/api/sessions/{session_uuid}/run/", json={"stream": True})
        if response.headers["content-type"].startswith("text/event-stream"):
            return response.status_code, list(iter_sse(response.text.splitlines()))
        return response.status_code, [response.json()]


# --- many clients, many workers ----------------------------------------------------------------------------


@pytest.mark.scaleout
def test_concurrent_add_messages_across_workers_keep_a_gapless_seq(workers):
    a, b, _ = workers
    with a.client() as client:
        session_uuid = _session(client)
    threads, posts = 8, 10
    start = threading.Barrier(threads)
    results: list[tuple[int, list[tuple[int, str]]]] = []
    lock = threading.Lock()

    def poster(n: int) -> None:
        with a.client() as on_a, b.client() as on_b:
            start.wait(10)
            for i in range(posts):
                client = (on_a, on_b)[(n + i) % 2]  # alternate workers, half the threads starting on each
                texts = [f"t{n} p{i} first", f"t{n} p{i} second"]
                response = client.post(
                    f"/api/sessions/{session_uuid}/messages/",
                    json={"messages": [{"role": "user", "content": t} for t in texts]},
                )
                if response.status_code == 201:
                    stored = [(m["seq"], m["content"]) for m in response.json()["messages"]]
                else:
                    stored = [(0, response.text[:300])]
                with lock:
                    results.append((response.status_code, stored))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(poster, range(threads)))

    assert [status for status, _ in results] == [201] * (threads * posts), [r for r in results if r[0] != 201]
    # Each request's pair got adjacent seqs, in the order sent.
    for _, [(seq1, text1), (seq2, text2)] in results:
        assert seq2 == seq1 + 1 and text1.endswith("first") and text2 == text1.replace("first", "second")
    # Together they are 1..N, each once, and what was answered is what is stored (read on the other worker).
    total = 2 * threads * posts
    answered = dict(pair for _, stored in results for pair in stored)
    history = _history(b, session_uuid)
    assert [m["seq"] for m in history] == list(range(1, total + 1))
    assert {m["seq"]: m["content"] for m in history} == answered
    assert len(set(answered.values())) == total


@pytest.mark.scaleout
def test_concurrent_runs_across_workers_one_proceeds_the_rest_are_busy(site, workers):
    a, b, _ = workers
    # A reply of 400 words takes 20 s: the run surely outlasts every other attempt; it is cancelled once they
    # have all been answered, from the other worker (a cancel reaches a run on any worker).
    text = " ".join(f"word{i}" for i in range(400))
    with a.client() as client:
        session_uuid = _session(client, text)
    n = 8
    start = threading.Barrier(n)
    answered: dict[int, int] = {}
    all_answered = threading.Condition()

    def attempt(i: int) -> tuple[int, list[dict]]:
        worker = (a, b)[i % 2]
        with worker.client() as client:
            start.wait(10)
            with client.stream("POST", f"/api/sessions/{session_uuid}/run/", json={"stream": True}) as response:
                with all_answered:
                    answered[i] = response.status_code
                    all_answered.notify_all()
                if response.status_code == 200:
                    return 200, list(iter_sse(response.iter_lines()))
                return response.status_code, [json.loads(response.read())]

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(attempt, i) for i in range(n)]
        with all_answered:
            assert all_answered.wait_for(lambda: len(answered) == n, timeout=20), answered
        winners = [i for i, status in answered.items() if status == 200]
        assert len(winners) == 1, answered
        # Let the winner say a few words first: the cancel reaches its worker at once (its control channel).
        time.sleep(1.0)
        with (b, a)[winners[0] % 2].client() as client:
            cancel = client.post(f"/api/sessions/{session_uuid}/cancel/")
        outcomes = [future.result(timeout=30) for future in futures]
    assert cancel.status_code == 200 and cancel.json()["cancel_requested"] is True, cancel.text

    assert sorted(status for status, _ in outcomes) == [200] + [409] * (n - 1)
    for status, [body, *_] in outcomes:
        if status == 409:
            assert body["error"] is True and body["error_code"] == "session_busy" and body["run_uuid"] is None
    (events,) = [events for status, events in outcomes if status == 200]
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.completed"
    assert events[-1]["status"] == "cancelled"
    run_id = events[0]["run_id"]
    streamed = "".join(e["delta"] for e in events if e["type"] == "run.delta")
    assert streamed.startswith("You said: word0 word1") and len(streamed) < len(f"You said: {text}")

    # One reply stored: what was streamed before the cancel, marked so.
    history = _history(b, session_uuid)
    assert [(m["role"], m["content"], m["run_id"], m["metadata"]) for m in history] == [
        ("user", text, None, {}),
        ("assistant", streamed, run_id, {"cancelled": True}),
    ]
    # The refused runs never began: one Run record.
    runs = site.query(
        "SELECT uuid::text, status FROM chatmodel_app_run WHERE session_id = %s", (_session_row_id(site, session_uuid),)
    )
    assert runs == [(run_id, "cancelled")]


# --- websockets across workers ------------------------------------------------------------------------------


@pytest.mark.scaleout
async def test_a_socket_on_one_worker_streams_a_rest_run_on_another(workers):
    a, b, _ = workers
    with b.client() as client:
        session_uuid = await asyncio.to_thread(_session, client)
    text = "Tell me about word0 word1 word2 word3 word4 word5 word6 word7"
    async with a.socket(session_uuid) as ws:
        with b.client() as client:
            added = await asyncio.to_thread(
                client.post,
                f"/api/sessions/{session_uuid}/messages/",
                json={"messages": [{"role": "user", "content": text}]},
            )
        assert added.status_code == 201
        assert (await _until(ws, "messages.added"))[-1]["messages"][0]["content"] == text

        rest = asyncio.create_task(asyncio.to_thread(_sse_run, b, session_uuid))
        seen = await _until(ws, "run.completed", "run.failed")
        status, sse_events = await rest
    assert status == 200
    types = [e["type"] for e in seen]
    assert types[0] == "run.started" and types[-1] == "run.completed" and types.count("run.delta") > 3
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    # What the socket on A saw is what the REST caller on B saw (the SSE terminal event adds the response).
    assert [{k: v for k, v in e.items() if k != "response"} for e in sse_events] == seen
    streamed = "".join(e["delta"] for e in seen if e["type"] == "run.delta")
    stored = (await asyncio.to_thread(_history, a, session_uuid))[-1]
    assert streamed == stored["content"] == seen[-1]["message"]["content"] == f"You said: {text}"
    assert stored["run_id"] == seen[0]["run_id"]


@pytest.mark.scaleout
async def test_a_run_driven_by_a_socket_on_one_worker_reaches_a_socket_on_another(workers):
    a, b, _ = workers
    with a.client() as client:
        session_uuid = await asyncio.to_thread(_session, client, "Hello")
    async with a.socket(session_uuid) as driver, b.socket(session_uuid) as watcher:
        await driver.send(json.dumps({"type": "run", "stream": True}))
        seen_by_driver = await _until(driver, "run.completed", "run.failed")
        seen_by_watcher = await _until(watcher, "run.completed", "run.failed")
    assert seen_by_watcher == seen_by_driver
    assert seen_by_watcher[-1]["type"] == "run.completed"
    assert "".join(e.get("delta", "") for e in seen_by_watcher) == "Hello! What can I help you with?"


@pytest.mark.scaleout
async def test_an_idle_socket_stays_open_and_gets_a_later_run(workers):
    # The Redis layer waits for a socket's messages with a blocking 5 s read; redis-py >= 8 gives up on any read
    # after 5 s by default and the socket is closed with 1011, unless the settings lengthen socket_timeout.
    a, b, _ = workers
    with a.client() as client:
        session_uuid = await asyncio.to_thread(_session, client, "Hello")
    async with b.socket(session_uuid) as ws:
        await asyncio.sleep(7)  # the idle spell under test, longer than the layer's blocking read
        with a.client() as client:
            response = await asyncio.to_thread(client.post, f"/api/sessions/{session_uuid}/run/", json={})
        assert response.status_code == 200, response.text
        seen = await _until(ws, "run.completed", "run.failed")
    assert [e["type"] for e in seen] == ["run.started", "run.completed"]
    assert seen[-1]["message"]["content"] == response.json()["content"] == "Hello! What can I help you with?"


# --- rejoin and double-texting across workers ---------------------------------------------------------------


def _deltas_after(events: list[dict], seq: int) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "run.delta" and e["seq"] > seq)


@pytest.mark.scaleout
async def test_a_socket_on_another_worker_rejoins_a_live_run_with_no_gap_and_no_duplicate(workers):
    a, b, _ = workers
    with a.client() as client:
        session_uuid = await asyncio.to_thread(_session, client, LONG_TEXT)
    async with a.socket(session_uuid) as driver:
        await driver.send(json.dumps({"type": "run", "stream": True}))
        await _until(driver, "run.delta")
        await _until(driver, "run.delta")
        # The run streams on A; B's socket asks A's worker for the text so far, then follows the live events.
        async with b.socket(session_uuid) as late:
            snapshot = json.loads(await asyncio.wait_for(late.recv(), 10))
            assert snapshot["type"] == "run.snapshot", snapshot
            assert snapshot["seq"] >= 3 and snapshot["content"].startswith("You said:")
            rest = await _until(late, "run.completed", "run.failed")
        await _until(driver, "run.completed", "run.failed")
    assert all(e["seq"] > snapshot["seq"] for e in rest)
    assert rest[-1]["type"] == "run.completed"
    assert snapshot["content"] + _deltas_after(rest, snapshot["seq"]) == REPLY


def _allow_double_texting(site: Site) -> None:
    site.query(
        "UPDATE chatmodel_app_version SET double_texting_allowed = %s::jsonb RETURNING id",
        ('["enqueue", "interrupt", "rollback"]',),
    )


def _post_messages(worker: Worker, session_uuid: str, text: str, policy: str) -> httpx.Response:
    with worker.client() as client:
        return client.post(
            f"/api/sessions/{session_uuid}/messages/",
            json={"messages": [{"role": "user", "content": text}], "double_texting": policy},
        )


@pytest.mark.scaleout
async def test_enqueue_on_one_worker_runs_after_the_run_on_another(site, workers):
    a, b, _ = workers
    _allow_double_texting(site)
    with a.client() as client:
        session_uuid = await asyncio.to_thread(_session, client, LONG_TEXT)
    async with a.socket(session_uuid) as ws:
        await ws.send(json.dumps({"type": "run", "stream": True}))
        await _until(ws, "run.delta")
        queued = await asyncio.to_thread(_post_messages, b, session_uuid, "Next, please", "enqueue")
        assert queued.status_code == 202, queued.text
        assert queued.json()["run"] == "queued"
        first = (await _until(ws, "run.completed"))[-1]
        after = await _until(ws, "run.completed", timeout=30)
    assert after[-1]["run_id"] != first["run_id"]
    history = await asyncio.to_thread(_history, a, session_uuid)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[1]["content"] == REPLY and history[2]["content"] == "Next, please"
    assert [m["seq"] for m in history] == [1, 2, 3, 4]


@pytest.mark.scaleout
@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
async def test_interrupt_and_rollback_on_one_worker_stop_the_run_on_another(site, workers, policy):
    a, b, _ = workers
    _allow_double_texting(site)
    with a.client() as client:
        session_uuid = await asyncio.to_thread(_session, client, LONG_TEXT)
    async with a.socket(session_uuid) as ws:
        await ws.send(json.dumps({"type": "run", "stream": True}))
        await _until(ws, "run.delta")
        response = await asyncio.to_thread(_post_messages, b, session_uuid, "Stop, new question", policy)
        assert response.status_code == 201, response.text
        assert response.json()["run"] == "started"
        first = (await _until(ws, "run.completed"))[-1]
        assert first["status"] == "cancelled"
        second = (await _until(ws, "run.completed", timeout=30))[-1]
    assert second["status"] == "completed"
    history = await asyncio.to_thread(_history, a, session_uuid)
    roles = [m["role"] for m in history]
    if policy == "interrupt":
        assert roles == ["user", "assistant", "user", "assistant"]
        assert REPLY.startswith(history[1]["content"]) and history[1]["metadata"] == {"cancelled": True}
    else:
        assert roles == ["user", "user", "assistant"]
    assert [m["seq"] for m in history] == list(range(1, len(history) + 1))


# --- a worker dies mid-run ----------------------------------------------------------------------------------


@pytest.mark.scaleout
def test_a_worker_killed_mid_run_frees_the_session_after_the_lease(site, workers):
    a, b, victim = workers
    with a.client() as client:
        session_uuid = _session(client, LONG_TEXT)
    session_id = _session_row_id(site, session_uuid)

    with (
        victim.client() as client,
        client.stream("POST", f"/api/sessions/{session_uuid}/run/", json={"stream": True}) as response,
    ):
        assert response.status_code == 200
        events = iter_sse(response.iter_lines())
        started = next(events)
        assert started["type"] == "run.started"
        assert [next(events)["type"] for _ in range(3)] == ["run.delta"] * 3  # mid-stream
        victim.kill()
    dead_run = started["run_id"]
    assert victim.process.returncode == -9

    # The dead worker's claim holds until its lease runs out: both other workers say busy.
    with b.client() as on_b, a.client() as on_a:
        busy = on_b.post(f"/api/sessions/{session_uuid}/run/", json={})
        refused = on_a.post(
            f"/api/sessions/{session_uuid}/messages/", json={"messages": [{"role": "user", "content": "still there?"}]}
        )
        ((expires,),) = site.query("SELECT lease_expires_at FROM chatmodel_app_session WHERE id = %s", (session_id,))
        assert busy.status_code == 409 and busy.json()["error_code"] == "session_busy", busy.text
        assert refused.status_code == 409 and refused.json()["code"] == "session_busy", refused.text
        assert on_a.get(f"/api/sessions/{session_uuid}/").json()["active_run_uuid"] == dead_run

        # Then a run on another worker takes the session over.
        deadline = time.monotonic() + LEASE_SECONDS + 15
        while True:
            response = on_b.post(f"/api/sessions/{session_uuid}/run/", json={})
            if response.status_code != 409:
                break
            assert time.monotonic() < deadline, "the session stayed busy long after the lease"
            time.sleep(0.5)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["error"] is False and reply["content"] == REPLY

    runs = {
        uuid: (status, error, created_at)
        for uuid, status, error, created_at in site.query(
            "SELECT uuid::text, status, error, created_at FROM chatmodel_app_run WHERE session_id = %s", (session_id,)
        )
    }
    assert runs.keys() == {dead_run, reply["run_uuid"]}
    assert runs[dead_run][:2] == ("failed", "lease_expired")
    assert runs[reply["run_uuid"]][:2] == ("completed", "")
    # The session was taken over only once the dead run's lease had run out.
    assert runs[reply["run_uuid"]][2] >= expires
    # The history is intact: the user's message once, and the new reply; nothing of the dead run.
    assert [(m["seq"], m["role"], m["content"], m["run_id"]) for m in _history(a, session_uuid)] == [
        (1, "user", LONG_TEXT, None),
        (2, "assistant", REPLY, reply["run_uuid"]),
    ]


# --- the fencing rule, in process (both back ends) ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_run_that_outlived_its_lease_cannot_store_its_reply_after_new_messages(make_chat_model):
    from django.utils import timezone

    from chatmodel_app import services
    from chatmodel_app.client import ChatModel
    from chatmodel_app.llm import Completion
    from chatmodel_app.models import Message, Run, Session

    make_chat_model()
    chat = ChatModel("simple_assistant")
    chat.add_messages([{"role": "user", "content": "first"}])
    session = Session.objects.get(uuid=chat.session_uuid)
    stalled = services.run_start(session=session)
    # The worker stalls past its lease (no heartbeat), and a client adds a message meanwhile: allowed.
    Session.objects.filter(pk=session.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    chat.add_messages([{"role": "user", "content": "second"}])
    assert Run.objects.get(uuid=stalled.run.uuid).error == "lease_expired"
    # The stalled run wakes up with a reply to a history that has moved on: it is not stored.
    late = services.run_finish(stalled, Completion(content="reply to 'first' only", finish_reason="stop"))
    assert late.error and late.error_code == "lease_lost"
    rows = Message.objects.filter(session=session).order_by("seq").values_list("seq", "content")
    assert list(rows) == [(1, "first"), (2, "second")]
    # The session is free and whole: the next run answers the newest message.
    answer = chat.run()
    assert not answer.error and answer.content == "You said: second" and answer.message_seq == 3
