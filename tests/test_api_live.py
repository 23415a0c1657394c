"""The REST API over real HTTP: SSE under WSGI (pytest-django's live server) and ASGI (daphne),
a client that hangs up mid-stream, concurrent posts, and a bounded schemathesis run."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from rest_framework.authtoken.models import Token

from chatmodel_app.api import sse
from chatmodel_app.models import Message, Run

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = " ".join(f"word{i}" for i in range(50))


@pytest.fixture(autouse=True)
def _clean(transactional_db):
    # Depends on the database so that streamed runs are waited for before it is reset.
    cache.clear()
    yield
    assert sse.wait_idle(15), "a streamed run was still going at the end of the test"
    cache.clear()


@pytest.fixture
def auth(transactional_db) -> dict[str, str]:
    user = User.objects.create_user("alice")
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def iter_sse(lines: Iterator[str]) -> Iterator[dict]:
    """Events of an SSE stream as they arrive: {"id", "event", "data"}."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields:
                yield {"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


def wait_for(predicate, timeout: float = 15.0):
    """Poll ``predicate`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"still not true after {timeout} s")


def start_session(client: httpx.Client, text: str) -> str:
    created = client.post("/api/chat-models/simple_assistant/sessions/", json={})
    assert created.status_code == 201, created.text
    session_uuid = created.json()["uuid"]
    added = client.post(
        f"/api/sessions/{session_uuid}/messages/", json={"messages": [{"role": "user", "content": text}]}
    )
    assert added.status_code == 201, added.text
    return session_uuid


def check_streams_then_survives_hangup(base_url: str, auth: dict[str, str]) -> None:
    """A stream arrives as the model writes, and hanging up mid-stream loses nothing."""
    with httpx.Client(base_url=base_url, headers=auth, timeout=20) as client:
        session_uuid = start_session(client, WORDS)
        with client.stream("POST", f"/api/sessions/{session_uuid}/run/", json={"stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            events = iter_sse(response.iter_lines())
            started = next(events)
            assert started["event"] == "run.started"
            run_id = started["data"]["run_id"]
            first = next(events)
            assert first["event"] == "run.delta"
            assert first["id"] == f"{run_id}:2"
            # The first words reached us while the model was still writing: it really streams.
            assert Run.objects.get(uuid=run_id).status == "in_progress"
        # Leaving the block closed the connection mid-stream; the run goes on without us.
        run = wait_for(lambda: Run.objects.filter(uuid=run_id).exclude(status="in_progress").first())
        assert run.status == "completed"
        stored = Message.objects.get(run=run)
        assert stored.content == f"Echo: {WORDS}"
        assert stored.metadata == {}
        # And the stored reply is what a client reading the history sees.
        page = client.get(f"/api/sessions/{session_uuid}/messages/", params={"order": "desc", "limit": 1}).json()
        assert page["results"][0]["content"] == f"Echo: {WORDS}"


def test_sse_over_wsgi_streams_and_survives_a_hangup(live_server, fake_chat_model, fake_llm, auth):
    fake_chat_model("simple_assistant")
    fake_llm.token_delay = 0.03
    check_streams_then_survives_hangup(live_server.url, auth)


def test_sse_full_stream_over_wsgi(live_server, fake_chat_model, fake_llm, auth):
    fake_chat_model("simple_assistant")
    with httpx.Client(base_url=live_server.url, headers=auth, timeout=20) as client:
        session_uuid = start_session(client, "one two three")
        with client.stream(
            "POST", f"/api/sessions/{session_uuid}/run/", json={}, headers={"Accept": "text/event-stream"}
        ) as response:
            events = list(iter_sse(response.iter_lines()))
    assert [e["event"] for e in events][-1] == "run.completed"
    assert "".join(e["data"].get("delta", "") for e in events) == "Echo: one two three"
    assert len({e["id"] for e in events}) == len(events)


# --- daphne (the example project serves ASGI) ---------------------------------------------------------------


def _asgi_application():
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def _forget_inherited_connections():
    # The forked server must not share the parent's database connections: it opens its own.
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.connection = None


@pytest.fixture
def daphne_url(transactional_db, fake_key):
    from daphne.testing import DaphneProcess

    process = DaphneProcess("127.0.0.1", _asgi_application, setup=_forget_inherited_connections)
    process.start()
    try:
        if not process.ready.wait(20):
            raise RuntimeError("daphne did not start")
        yield f"http://127.0.0.1:{process.port.value}"
    finally:
        process.terminate()
        process.join(10)


def test_sse_over_daphne_streams_and_survives_a_hangup(fake_chat_model, fake_llm, auth, daphne_url):
    fake_chat_model("simple_assistant")
    fake_llm.token_delay = 0.03
    check_streams_then_survives_hangup(daphne_url, auth)


# --- concurrency -------------------------------------------------------------------------------------------


def test_concurrent_posts_keep_a_gapless_seq(live_server, make_chat_model, auth):
    make_chat_model("simple_assistant")
    with httpx.Client(base_url=live_server.url, headers=auth, timeout=30) as client:
        session_uuid = client.post("/api/chat-models/simple_assistant/sessions/", json={}).json()["uuid"]
    threads, posts = 6, 5
    results: list[tuple[int, list[int]]] = []
    lock = threading.Lock()

    def poster(n: int) -> None:
        with httpx.Client(base_url=live_server.url, headers=auth, timeout=30) as client:
            for i in range(posts):
                messages = [{"role": "user", "content": f"t{n} p{i} a"}, {"role": "user", "content": f"t{n} p{i} b"}]
                response = client.post(f"/api/sessions/{session_uuid}/messages/", json={"messages": messages})
                with lock:
                    results.append((response.status_code, [m["seq"] for m in response.json().get("messages", [])]))

    workers = [threading.Thread(target=poster, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [status for status, _ in results] == [201] * (threads * posts)
    # Each request's two messages are adjacent, and together they fill 1..N with no gap and no loss.
    assert all(b == a + 1 for _, (a, b) in results)
    stored = list(Message.objects.filter(session__uuid=session_uuid).order_by("seq").values_list("seq", "content"))
    assert [seq for seq, _ in stored] == list(range(1, 2 * threads * posts + 1))
    assert len({content for _, content in stored}) == 2 * threads * posts


# --- schemathesis ------------------------------------------------------------------------------------------


DEFAULT_EXAMPLES = 8
# Examples per operation and strategy: CHATMODEL_SCHEMATHESIS_EXAMPLES=100 makes a deeper, randomised hunt.
EXAMPLES = int(os.environ.get("CHATMODEL_SCHEMATHESIS_EXAMPLES") or DEFAULT_EXAMPLES)


@pytest.mark.timeout(max(150, 20 * EXAMPLES))
def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_server, make_chat_model, auth, settings):
    """Generated requests (valid and invalid) against every operation; bounded in count and time."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi import checks as openapi

    from chatmodel_app import llm

    # Runs are throttled per user; this test is one user making hundreds of calls.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"chatmodel_run": None}}
    # Imported up front: the first run would import litellm (seconds) inside one request's timeout.
    llm.get_litellm()
    make_chat_model("simple_assistant")
    User.objects.get(username="alice").user_permissions.add(Permission.objects.get(codename="view_version"))
    # Not positive_data_acceptance: the schema cannot say which messages a session's state accepts
    # (a function result needs a pending call), so valid-looking requests may rightly get a 400.
    checks = [
        not_a_server_error,
        openapi.status_code_conformance,
        openapi.content_type_conformance,
        openapi.response_headers_conformance,
        openapi.response_schema_conformance,
        openapi.negative_data_rejection,
    ]
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    with httpx.Client(base_url=live_server.url, headers=auth, timeout=30) as client:
        real_uuid = start_session(client, "Hello")
    real = {"uuid": real_uuid, "name": "simple_assistant"}
    started = time.monotonic()
    calls = 0
    skipped: list[tuple[str, bool]] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        variants = [None, {k: v for k, v in real.items() if k in names}] if names else [None]
        for path_parameters in variants:
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

                @given(case=strategy)
                @hypothesis_settings(
                    # A few hundred calls in all (about 40 strategies): bounded for CI, under a minute.
                    max_examples=EXAMPLES,
                    deadline=None,
                    derandomize=EXAMPLES == DEFAULT_EXAMPLES,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def check(case):
                    nonlocal calls
                    calls += 1
                    case.call_and_validate(base_url=live_server.url, headers=auth, checks=checks)

                try:
                    check()
                except Unsatisfiable:
                    # Nothing to make invalid (no parameters, or only the fixed ones): nothing to test.
                    assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
                    skipped.append((operation.label, path_parameters is not None))
    # And the stream, for certain: every event's JSON is checked against the schema's contentSchema.
    run_operation = schema["/api/sessions/{uuid}/run/"]["POST"]
    weather = {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }
    for body in ({"stream": True, "functions": [weather]}, {"stream": True}, {"stream": False}):
        with httpx.Client(base_url=live_server.url, headers=auth, timeout=30) as client:
            asked = start_session(client, "What is the weather in Boston?")
        case = run_operation.Case(path_parameters={"uuid": asked}, body=body, media_type="application/json")
        response = case.call_and_validate(base_url=live_server.url, headers=auth, checks=checks)
        assert response.status_code == 200
        calls += 1
    print(f"schemathesis: {calls} calls in {time.monotonic() - started:.1f} s; nothing to negate in {skipped}")
    assert calls > 100
    assert time.monotonic() - started < 120 * EXAMPLES / DEFAULT_EXAMPLES
