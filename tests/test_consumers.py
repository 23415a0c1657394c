"""The session websocket through the example project's ASGI stack (origin check, auth, routing, consumer)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

from chatmodel_app import consumers, llm, services
from chatmodel_app.models import Message, Run, Version
from chatmodel_app.routing import websocket_urlpatterns
from chatmodel_app.services import live
from chatmodel_app.ws_auth import ChatModelAuthMiddlewareStack, SameOriginValidator
from example_project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}
# The offline model answers "You said: <this>", one streamed chunk per word.
LONG_TEXT = " ".join(f"word{i}" for i in range(40))


@pytest.fixture(scope="module", autouse=True)
def _litellm_loaded():
    # Import litellm once up front, so no test's event timeout pays for it.
    llm.get_litellm()


@pytest.fixture(autouse=True)
async def _runs_finish(transactional_db):
    """Every run a socket started has ended (and been stored) before the database is flushed."""
    yield
    pending = set(consumers._runs)
    if pending:
        _done, still = await asyncio.wait(pending, timeout=15)
        assert not still, "a websocket run did not finish"


@pytest.fixture
def slow_model(settings):
    """The offline model streams a word every 50 ms, so a run can be watched, cancelled or abandoned."""
    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.05


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", password="pw")


@pytest.fixture
def owner_token(owner):
    return Token.objects.create(user=owner).key


@pytest.fixture
def session(make_chat_model, owner):
    chat_model = make_chat_model("simple_assistant")
    return services.session_create(chat_model=chat_model, user=owner)


def _token_of(django_user_model, username, *, perms=(), **fields):
    user = django_user_model.objects.create_user(username, password="pw", **fields)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="chatmodel_app", codename__in=perms))
    return Token.objects.create(user=user).key


def _reader_token(django_user_model, username="staff"):
    """A staff user granted chatmodel_app.view_session: reads (watches) other users' sessions."""
    return _token_of(django_user_model, username, perms=("view_session",), is_staff=True)


def _communicator(session_uuid, *, token=None, headers=(), app=application):
    all_headers = list(headers)
    if token is not None:
        all_headers.append((b"authorization", f"Token {token}".encode()))
    return WebsocketCommunicator(app, f"/ws/chatmodel/sessions/{session_uuid}/", headers=all_headers)


async def _open(session_uuid, token):
    communicator = _communicator(session_uuid, token=token)
    connected, code = await communicator.connect()
    assert connected, f"refused with close code {code}"
    return communicator


async def _until(communicator, *types, timeout=10.0):
    """Every event received up to and including the first whose type is in ``types``."""
    received = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {types} within {timeout} s; got {[e['type'] for e in received]}"
        event = await communicator.receive_json_from(timeout=remaining)
        received.append(event)
        if event["type"] in types:
            return received


def _text(events):
    return "".join(e["delta"] for e in events if e["type"] == "run.delta")


async def _add_user_message(communicator, text):
    await communicator.send_json_to({"type": "add_messages", "messages": [{"role": "user", "content": text}]})
    return (await _until(communicator, "messages.added", "error"))[-1]


async def _stored(run_id):
    return await database_sync_to_async(lambda: Run.objects.get(uuid=run_id))()


async def _reply_of(run_id):
    return await database_sync_to_async(lambda: Message.objects.get(run__uuid=run_id, role="assistant"))()


# --- refusals -------------------------------------------------------------------------------------


async def test_anonymous_socket_is_refused_before_accept(session):
    communicator = _communicator(session.uuid)
    assert await communicator.connect() == (False, consumers.CLOSE_UNAUTHENTICATED)
    await communicator.disconnect()


async def test_wrong_token_is_refused_and_does_not_fall_back_to_the_cookie(session, owner):
    client = Client()
    await sync_to_async(client.force_login)(owner)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    communicator = _communicator(session.uuid, token="not-a-token", headers=[cookie])
    assert await communicator.connect() == (False, consumers.CLOSE_UNAUTHENTICATED)
    await communicator.disconnect()


async def test_malformed_authorization_header_is_refused(session):
    communicator = _communicator(session.uuid, headers=[(b"authorization", b"Bearer")])
    assert await communicator.connect() == (False, consumers.CLOSE_UNAUTHENTICATED)
    await communicator.disconnect()


async def test_browser_session_cookie_authenticates(session, owner):
    client = Client()
    await sync_to_async(client.force_login)(owner)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    communicator = _communicator(session.uuid, headers=[cookie])
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "ping", "request_id": "p1"})
    pong = await communicator.receive_json_from()
    assert pong["type"] == "pong" and pong["request_id"] == "p1"
    await communicator.disconnect()


async def test_another_users_session_is_refused_like_a_missing_one(session, django_user_model):
    intruder = await database_sync_to_async(_token_of)(django_user_model, "intruder")
    communicator = _communicator(session.uuid, token=intruder)
    assert await communicator.connect() == (False, consumers.CLOSE_NOT_FOUND)
    await communicator.disconnect()
    communicator = _communicator("0b7d1e36-9c1f-4a51-9c8a-1d2f3e4a5b6c", token=intruder)
    assert await communicator.connect() == (False, consumers.CLOSE_NOT_FOUND)
    await communicator.disconnect()


async def test_session_without_user_is_staff_only(make_chat_model, django_user_model, owner_token):
    chat_model = await database_sync_to_async(make_chat_model)("simple_assistant")
    orphan = await database_sync_to_async(services.session_create)(chat_model=chat_model)
    communicator = _communicator(orphan.uuid, token=owner_token)
    assert await communicator.connect() == (False, consumers.CLOSE_NOT_FOUND)
    await communicator.disconnect()
    staff = await database_sync_to_async(_reader_token)(django_user_model)
    communicator = await _open(orphan.uuid, staff)
    error = await _add_user_message(communicator, "Hello")
    assert (error["type"], error["code"]) == ("error", "forbidden")
    await communicator.disconnect()


async def test_anonymous_sockets_when_the_api_allows_anonymous_callers(session, make_chat_model):
    chat_model = await database_sync_to_async(make_chat_model)("simple_assistant")
    anonymous_session = await database_sync_to_async(services.session_create)(chat_model=chat_model)
    with override_settings(CHATMODEL_API_ALLOW_ANONYMOUS=True):
        communicator = _communicator(anonymous_session.uuid)
        connected, _ = await communicator.connect()
        assert connected
        added = await _add_user_message(communicator, "Hello")
        assert added["type"] == "messages.added"
        await communicator.disconnect()
        # A user's session stays theirs.
        communicator = _communicator(session.uuid)
        assert await communicator.connect() == (False, consumers.CLOSE_NOT_FOUND)
        await communicator.disconnect()


async def test_staff_may_watch_a_users_session_but_not_change_it(session, owner_token, django_user_model):
    staff = await database_sync_to_async(_reader_token)(django_user_model)
    watcher = await _open(session.uuid, staff)
    for frame in ({"type": "run"}, {"type": "cancel"}, {"type": "add_messages", "messages": []}):
        await watcher.send_json_to(frame)
        error = await watcher.receive_json_from()
        assert (error["type"], error["code"]) == ("error", "forbidden")
    user = await _open(session.uuid, owner_token)
    await _add_user_message(user, "Hello")
    await user.send_json_to({"type": "run"})
    watched = await _until(watcher, "run.completed")
    assert _text(watched) == "Hello! What can I help you with?"
    await user.disconnect()
    await watcher.disconnect()


async def test_foreign_origin_is_refused(session, owner_token):
    # The example project's validator (scheme, host and port: tests/test_hardening.py has the cases).
    app = SameOriginValidator(ChatModelAuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
    host = (b"host", b"chat.example.com")
    with override_settings(ALLOWED_HOSTS=["chat.example.com"]):
        evil = _communicator(
            session.uuid, token=owner_token, headers=[host, (b"origin", b"https://evil.example.net")], app=app
        )
        connected, _ = await evil.connect()
        assert not connected
        await evil.disconnect()
        good = _communicator(
            session.uuid, token=owner_token, headers=[host, (b"origin", b"http://chat.example.com")], app=app
        )
        connected, _ = await good.connect()
        assert connected
        await good.disconnect()


# --- the protocol ----------------------------------------------------------------------------------


async def test_add_messages_then_streamed_run(session, owner_token):
    communicator = await _open(session.uuid, owner_token)
    added = await _add_user_message(communicator, "Hello, I'm a user.")
    assert added["type"] == "messages.added"
    assert added["run_id"] is None and added["session_uuid"] == str(session.uuid)
    assert [(m["role"], m["content"], m["seq"]) for m in added["messages"]] == [("user", "Hello, I'm a user.", 1)]

    await communicator.send_json_to({"type": "run", "stream": True, "temperature": 0.2})
    events = await _until(communicator, "run.completed", "run.failed")
    types = [e["type"] for e in events]
    assert types[0] == "run.started" and types[-1] == "run.completed"
    assert set(types[1:-1]) == {"run.delta"} and len(types) > 3
    run_id = events[0]["run_id"]
    assert all(e["run_id"] == run_id for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    completed = events[-1]
    reply = await _reply_of(run_id)
    assert _text(events) == reply.content == completed["message"]["content"] == "Hello! What can I help you with?"
    assert completed["status"] == "completed"
    assert completed["message"]["seq"] == 2 and completed["message"]["role"] == "assistant"
    assert completed["usage"]["completion_tokens"] > 0
    assert (await _stored(run_id)).params["temperature"] == 0.2
    await communicator.disconnect()


async def test_run_without_stream_sends_no_deltas(session, owner_token):
    communicator = await _open(session.uuid, owner_token)
    await _add_user_message(communicator, "Hello")
    await communicator.send_json_to({"type": "run", "stream": False})
    events = await _until(communicator, "run.completed", "run.failed")
    assert [e["type"] for e in events] == ["run.started", "run.completed"]
    assert events[0]["stream"] is False
    assert events[1]["message"]["content"] == "Hello! What can I help you with?"
    await communicator.disconnect()


async def test_tool_call_is_streamed_as_tool_call_deltas(session, owner_token):
    communicator = await _open(session.uuid, owner_token)
    await _add_user_message(communicator, "What's the weather in Boston?")
    await communicator.send_json_to({"type": "run", "functions": [WEATHER]})
    events = await _until(communicator, "run.completed", "run.failed")
    deltas = [d for e in events if e["type"] == "run.tool_call_delta" for d in e["deltas"]]
    assert deltas and deltas[0]["name"] == "get_weather"
    assert json.loads("".join(d["arguments"] for d in deltas)) == {"location": "Boston"}
    message = events[-1]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"

    # The function's result goes back the same way, and the model answers with it.
    call_id = message["tool_calls"][0]["id"]
    added = await _add_user_message_raw(
        communicator, [{"role": "tool", "tool_call_id": call_id, "content": "13 degrees celsius"}]
    )
    assert added["type"] == "messages.added"
    await communicator.send_json_to({"type": "run"})
    events = await _until(communicator, "run.completed", "run.failed")
    assert events[-1]["message"]["content"] == "It's 13 degrees celsius in Boston."
    await communicator.disconnect()


async def _add_user_message_raw(communicator, messages):
    await communicator.send_json_to({"type": "add_messages", "messages": messages})
    return (await _until(communicator, "messages.added", "error"))[-1]


async def test_ping_gets_pong_with_request_id_and_socket_sequence(session, owner_token):
    communicator = await _open(session.uuid, owner_token)
    await communicator.send_json_to({"type": "ping", "request_id": 7})
    await communicator.send_json_to({"type": "ping"})
    first, second = await communicator.receive_json_from(), await communicator.receive_json_from()
    assert (first["type"], first["request_id"], first["run_id"], first["seq"]) == ("pong", 7, None, 1)
    assert (second["type"], second["seq"]) == ("pong", 2) and "request_id" not in second
    await communicator.disconnect()


async def test_failed_run_reports_error_and_error_log(session, owner_token, fake_chat_model, fake_llm, owner):
    from chatmodel_app.testing import FakeReply

    chat_model = await database_sync_to_async(fake_chat_model)("faulty")
    faulty = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    fake_llm.enqueue(FakeReply(fault="429"))
    communicator = await _open(faulty.uuid, owner_token)
    await _add_user_message(communicator, "Hello")
    await communicator.send_json_to({"type": "run"})
    events = await _until(communicator, "run.completed", "run.failed")
    failed = events[-1]
    assert failed["type"] == "run.failed" and failed["error"] == "rate_limit"
    assert "Rate limit" in failed["error_log"]
    assert (await _stored(failed["run_id"])).status == "failed"
    # The socket stays usable, and the retry succeeds.
    await communicator.send_json_to({"type": "run"})
    events = await _until(communicator, "run.completed", "run.failed")
    assert events[-1]["type"] == "run.completed" and events[-1]["message"]["content"] == "Echo: Hello"
    await communicator.disconnect()


# --- fan-out ---------------------------------------------------------------------------------------


async def test_every_socket_on_the_session_sees_the_same_run(session, owner_token):
    first = await _open(session.uuid, owner_token)
    second = await _open(session.uuid, owner_token)
    await _add_user_message(first, "Hello")
    assert (await _until(second, "messages.added"))[-1]["messages"][0]["content"] == "Hello"
    await second.send_json_to({"type": "run"})
    seen_by_first = await _until(first, "run.completed")
    seen_by_second = await _until(second, "run.completed")
    assert seen_by_first == seen_by_second
    assert _text(seen_by_first) == seen_by_first[-1]["message"]["content"]
    await first.disconnect()
    await second.disconnect()


async def test_run_started_outside_any_socket_streams_to_the_sockets(session, owner_token):
    communicator = await _open(session.uuid, owner_token)
    await database_sync_to_async(services.messages_add)(session=session, messages=[{"role": "user", "content": "Hi"}])
    assert (await _until(communicator, "messages.added"))[-1]["messages"][0]["content"] == "Hi"
    # As a synchronous (WSGI) REST view would: the sync pipeline in a worker thread.
    chunks = await sync_to_async(lambda: list(services.run_stream(session=session)))()
    events = await _until(communicator, "run.completed")
    assert events == [e for chunk in chunks for e in chunk.events]
    assert _text(events) == "Hello! What can I help you with?"
    await communicator.disconnect()


async def test_sockets_on_other_sessions_see_nothing(session, owner_token, owner):
    other = await database_sync_to_async(services.session_create)(chat_model=session.chat_model, user=owner)
    bystander = await _open(other.uuid, owner_token)
    communicator = await _open(session.uuid, owner_token)
    await _add_user_message(communicator, "Hello")
    await communicator.send_json_to({"type": "run"})
    await _until(communicator, "run.completed")
    assert await bystander.receive_nothing(timeout=0.2)
    await communicator.disconnect()
    await bystander.disconnect()


# --- bad input -------------------------------------------------------------------------------------


async def _error_for(communicator, *, text=None, data=None):
    if data is not None:
        await communicator.send_to(bytes_data=data)
    else:
        await communicator.send_to(text_data=text)
    event = await communicator.receive_json_from()
    assert event["type"] == "error", event
    return event


async def test_bad_frames_get_an_error_and_the_socket_stays_usable(session, owner_token):
    communicator = await _open(session.uuid, owner_token)
    cases = [
        ({"text": "{not json"}, "invalid_json"),
        ({"text": "[1, 2]"}, "invalid_frame"),
        ({"data": b"\x00\x01"}, "invalid_frame"),
        ({"text": json.dumps({"type": "shout"})}, "unknown_type"),
        ({"text": json.dumps({"no": "type"})}, "unknown_type"),
        ({"text": json.dumps({"type": "add_messages", "messages": "hello"})}, "invalid_messages"),
        ({"text": json.dumps({"type": "add_messages", "messages": [{"role": "system", "content": "x"}]})}, None),
        ({"text": json.dumps({"type": "run", "model": "gpt-4o", "api_base": "http://evil"})}, "invalid_params"),
        ({"text": json.dumps({"type": "run", "temperature": 9})}, "invalid_params"),
        ({"text": json.dumps({"type": "run", "stream": "yes"})}, "invalid_params"),
        ({"text": json.dumps({"type": "run", "functions": [{"parameters": 3}]})}, "invalid_params"),
        ({"text": json.dumps({"type": "cancel", "request_id": "c1"})}, "no_active_run"),
    ]
    for frame, code in cases:
        error = await _error_for(communicator, **frame)
        if code is None:  # a refused role: invalid_messages whatever the exact wording
            assert error["code"] == "invalid_messages" and "system" in error["message"]
        else:
            assert error["code"] == code, (frame, error)
        assert error["message"]
    assert error["request_id"] == "c1"
    # Nothing bad was stored, and the socket still works.
    assert await database_sync_to_async(lambda: Message.objects.filter(session=session).count())() == 0
    assert await database_sync_to_async(lambda: Run.objects.filter(session=session).count())() == 0
    await _add_user_message(communicator, "Hello")
    await communicator.send_json_to({"type": "run"})
    assert (await _until(communicator, "run.completed"))[-1]["message"]["content"]
    await communicator.disconnect()


async def test_oversized_frame_is_refused(session, owner_token):
    with override_settings(CHATMODEL_WS_MAX_FRAME_BYTES=1000):
        communicator = await _open(session.uuid, owner_token)
        big = json.dumps(
            {"type": "add_messages", "messages": [{"role": "user", "content": "é" * 600}]}, ensure_ascii=False
        )
        assert len(big) < 1000 < len(big.encode())  # counted in bytes, not characters
        error = await _error_for(communicator, text=big)
        assert error["code"] == "frame_too_large"
        added = await _add_user_message(communicator, "small")
        assert added["type"] == "messages.added"
        await communicator.disconnect()


async def test_rate_limit_per_socket(session, owner_token):
    with override_settings(CHATMODEL_WS_RATE_LIMIT="3/min"):
        communicator = await _open(session.uuid, owner_token)
        other = await _open(session.uuid, owner_token)
        for _ in range(3):
            await communicator.send_json_to({"type": "ping"})
            assert (await communicator.receive_json_from())["type"] == "pong"
        await communicator.send_json_to({"type": "ping"})
        limited = await communicator.receive_json_from()
        assert limited["type"] == "error" and limited["code"] == "rate_limited"
        assert 0 < limited["retry_after"] <= 20
        # The limit is the socket's own: another socket on the same session is not affected.
        await other.send_json_to({"type": "ping"})
        assert (await other.receive_json_from())["type"] == "pong"
        await communicator.disconnect()
        await other.disconnect()


def test_rate_limit_format_is_checked():
    from django.core.exceptions import ImproperlyConfigured

    assert consumers.RateLimit(None).take() == 0.0
    assert consumers.RateLimit("2/s").capacity == 2
    with pytest.raises(ImproperlyConfigured):
        consumers.RateLimit("lots")


async def test_run_while_a_run_is_active_is_an_error(session, owner_token, slow_model):
    communicator = await _open(session.uuid, owner_token)
    await _add_user_message(communicator, LONG_TEXT)
    await communicator.send_json_to({"type": "run"})
    await _until(communicator, "run.delta")
    await communicator.send_json_to({"type": "run", "request_id": "second"})
    await communicator.send_json_to({"type": "add_messages", "messages": [{"role": "user", "content": "more"}]})
    events = await _until(communicator, "run.completed")
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["session_busy", "session_busy"]
    assert errors[0]["request_id"] == "second"
    assert events[-1]["message"]["content"] == f"You said: {LONG_TEXT}"
    assert await database_sync_to_async(lambda: Run.objects.filter(session=session).count())() == 1
    await communicator.disconnect()


# --- cancel and disconnect -------------------------------------------------------------------------


async def test_cancel_stops_within_a_chunk_and_keeps_what_was_said(session, owner_token, slow_model):
    communicator = await _open(session.uuid, owner_token)
    await _add_user_message(communicator, LONG_TEXT)
    await communicator.send_json_to({"type": "run"})
    before = await _until(communicator, "run.delta")
    before += await _until(communicator, "run.delta")
    await communicator.send_json_to({"type": "cancel"})
    after = await _until(communicator, "run.completed")
    deltas_after_cancel = [e for e in after if e["type"] == "run.delta"]
    # The chunk in flight when the cancel arrived may still come; then the run stops.
    assert len(deltas_after_cancel) <= 2
    completed = after[-1]
    assert completed["status"] == "cancelled"
    streamed = _text(before) + _text(after)
    # The full reply is 42 words; the cancelled one is what the sockets saw, stored as such.
    assert 0 < len(streamed) < len(f"You said: {LONG_TEXT}")
    reply = await _reply_of(completed["run_id"])
    assert reply.content == streamed == completed["message"]["content"]
    assert reply.metadata == {"cancelled": True}
    assert (await _stored(completed["run_id"])).status == "cancelled"
    await communicator.disconnect()


async def test_disconnect_mid_run_loses_nothing(session, owner_token, slow_model):
    watcher = await _open(session.uuid, owner_token)
    starter = await _open(session.uuid, owner_token)
    await _add_user_message(starter, LONG_TEXT)
    await starter.send_json_to({"type": "run"})
    await _until(starter, "run.delta")
    await starter.disconnect()
    # The run goes on without its socket: the other socket sees it to the end, and it is stored in full.
    events = await _until(watcher, "run.completed")
    completed = events[-1]
    assert completed["status"] == "completed"
    assert _text(events) == f"You said: {LONG_TEXT}"
    assert (await _reply_of(completed["run_id"])).content == f"You said: {LONG_TEXT}"
    await watcher.disconnect()


async def test_disconnect_of_the_only_socket_still_stores_the_whole_reply(session, owner_token, slow_model):
    starter = await _open(session.uuid, owner_token)
    await _add_user_message(starter, LONG_TEXT)
    await starter.send_json_to({"type": "run"})
    run_id = (await _until(starter, "run.started"))[-1]["run_id"]
    await starter.disconnect()
    deadline = time.monotonic() + 15
    while (await _stored(run_id)).status == "in_progress":
        assert time.monotonic() < deadline, "the abandoned run never finished"
        await asyncio.sleep(0.05)
    assert (await _stored(run_id)).status == "completed"
    assert (await _reply_of(run_id)).content == f"You said: {LONG_TEXT}"


async def test_runs_follow_their_socket_when_configured(session, owner_token, slow_model):
    with override_settings(CHATMODEL_WS_RUNS_FOLLOW_SOCKET=True):
        watcher = await _open(session.uuid, owner_token)
        starter = await _open(session.uuid, owner_token)
        await _add_user_message(starter, LONG_TEXT)
        await starter.send_json_to({"type": "run"})
        await _until(starter, "run.delta")
        await starter.disconnect()
        events = await _until(watcher, "run.completed")
        assert events[-1]["status"] == "cancelled"
        assert (await _reply_of(events[-1]["run_id"])).content == _text(events)
        assert len(_text(events)) < len(f"You said: {LONG_TEXT}")
        await watcher.disconnect()


async def test_a_watching_staff_user_may_ping(session, django_user_model):
    staff = await database_sync_to_async(_reader_token)(django_user_model)
    watcher = await _open(session.uuid, staff)
    await watcher.send_json_to({"type": "ping", "request_id": 7})
    pong = await watcher.receive_json_from()
    assert (pong["type"], pong["request_id"]) == ("pong", 7)
    await watcher.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (json.dumps({"type": ["ping"]}), "unknown_type"),
        (json.dumps({"type": {"a": 1}}), "unknown_type"),
        ("[" * 5000 + "]" * 5000, "invalid_json"),
        ('{"type": "ping", "x": ' + "[" * 5000 + "]" * 5000 + "}", "invalid_json"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(session, owner_token, frame, code):
    communicator = await _open(session.uuid, owner_token)
    await communicator.send_to(text_data=frame)
    error = await communicator.receive_json_from()
    assert (error["type"], error["code"]) == ("error", code)
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from())["type"] == "pong"
    await communicator.disconnect()


@pytest.mark.parametrize("path_uuid", ["not-a-uuid", "00000000-0000-0000-0000-00000000000g", "1234"])
async def test_a_malformed_session_uuid_is_refused_as_unknown(session, owner_token, path_uuid):
    communicator = _communicator(path_uuid, token=owner_token)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, consumers.CLOSE_NOT_FOUND)
    await communicator.disconnect()


# --- rejoining a live run -----------------------------------------------------------------------------------


def _after(events, seq):
    return "".join(e["delta"] for e in events if e["type"] == "run.delta" and e["seq"] > seq)


async def test_a_socket_that_connects_mid_run_gets_the_text_so_far_then_the_rest(session, owner_token, slow_model):
    first = await _open(session.uuid, owner_token)
    await _add_user_message(first, LONG_TEXT)
    await first.send_json_to({"type": "run"})
    seen = await _until(first, "run.delta")
    await _until(first, "run.delta")  # a few words in

    late = await _open(session.uuid, owner_token)
    snapshot = await late.receive_json_from(timeout=5)
    assert snapshot["type"] == "run.snapshot" and snapshot["run_id"] == seen[-1]["run_id"]
    assert snapshot["content"].startswith("You said:") and snapshot["seq"] >= 3
    rest = await _until(late, "run.completed")
    assert all(e["seq"] > snapshot["seq"] for e in rest)  # nothing twice
    reply = await _reply_of(snapshot["run_id"])
    assert snapshot["content"] + _after(rest, snapshot["seq"]) == reply.content  # nothing missing
    await _until(first, "run.completed")
    await first.disconnect()
    await late.disconnect()


async def test_resume_frame_mid_run_and_when_idle(session, owner_token, slow_model):
    socket = await _open(session.uuid, owner_token)
    await socket.send_json_to({"type": "resume", "request_id": 1})
    idle = await _until(socket, "resumed")
    assert idle[-1]["run_id"] is None and idle[-1]["request_id"] == 1

    await _add_user_message(socket, LONG_TEXT)
    await socket.send_json_to({"type": "run"})
    await _until(socket, "run.delta")
    await socket.send_json_to({"type": "resume"})  # as a client does after a missed frame
    before = await _until(socket, "run.snapshot")
    snapshot = before[-1]
    rest = await _until(socket, "run.completed")
    assert all(e["seq"] > snapshot["seq"] for e in rest if e["type"].startswith("run."))
    reply = await _reply_of(snapshot["run_id"])
    assert snapshot["content"] + _after(rest, snapshot["seq"]) == reply.content
    await socket.disconnect()


async def test_the_stored_snapshot_is_what_a_worker_without_the_run_falls_back_to(session, owner_token, slow_model):
    socket = await _open(session.uuid, owner_token)
    await _add_user_message(socket, LONG_TEXT)
    await socket.send_json_to({"type": "run"})
    delta = (await _until(socket, "run.delta"))[-1]
    run = await database_sync_to_async(live.run_with_session)(run_id=delta["run_id"])
    stored = live.stored_snapshot(run)
    assert stored["type"] == "run.snapshot" and stored["run_id"] == delta["run_id"]
    assert stored["status"] == "in_progress"
    await _until(socket, "run.completed")
    await socket.disconnect()


# --- double-texting ----------------------------------------------------------------------------------------


def _allow(chat_model, *policies):
    Version.objects.filter(chat_model=chat_model).update(double_texting_allowed=list(policies))


async def test_websocket_enqueue_runs_the_queued_message_after_the_active_run(session, owner_token, slow_model):
    await database_sync_to_async(_allow)(session.chat_model, "enqueue")
    socket = await _open(session.uuid, owner_token)
    await _add_user_message(socket, LONG_TEXT)
    await socket.send_json_to({"type": "run"})
    await _until(socket, "run.delta")
    await socket.send_json_to(
        {
            "type": "add_messages",
            "request_id": "q",
            "double_texting": "enqueue",
            "messages": [{"role": "user", "content": "And then?"}],
        }
    )
    queued = (await _until(socket, "messages.queued"))[-1]
    assert queued["request_id"] == "q" and queued["double_texting"] == "enqueue"
    first = (await _until(socket, "run.completed"))[-1]
    after = await _until(socket, "run.completed", timeout=30)
    added = [e for e in after if e["type"] == "messages.added"]
    assert added and added[0]["messages"][0]["content"] == "And then?"
    second = after[-1]
    assert second["run_id"] != first["run_id"] and second["status"] == "completed"
    roles = await database_sync_to_async(
        lambda: list(Message.objects.filter(session=session).order_by("seq").values_list("role", flat=True))
    )()
    assert roles == ["user", "assistant", "user", "assistant"]
    await socket.disconnect()


# --- refusals say why in the server log -----------------------------------------------------------------------


async def test_each_refusal_is_logged_with_its_reason(session, owner_token, caplog):
    caplog.set_level("WARNING", logger="chatmodel_app")
    cases = [
        (_communicator(session.uuid), "no login and no token"),
        (_communicator(session.uuid, token="not-a-token"), "a bad or unknown token"),
        (_communicator("6f1c0000-0000-4000-8000-000000000000", token=owner_token), "no such session"),
    ]
    for communicator, reason in cases:
        caplog.clear()
        connected, _code = await communicator.connect()
        assert not connected
        assert any(reason in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
        await communicator.disconnect()
    caplog.clear()
    foreign = _communicator(session.uuid, token=owner_token, headers=[(b"origin", b"http://evil.example:8000")])
    connected, _code = await foreign.connect()
    assert not connected
    assert any("origin http://evil.example:8000" in r.getMessage() for r in caplog.records)
    await foreign.disconnect()
