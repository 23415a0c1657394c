"""The AI SDK door over HTTP (DRF's test client): what is stored, the stream's parts, ownership and refusals."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from chatmodel_app import selectors
from chatmodel_app.ai_sdk import chats
from chatmodel_app.models import ChatModel, Message, Run, Session
from chatmodel_app.testing import FakeReply
from tests.ai_sdk.conftest import assistant_message, read_parts, user_message

CHAT = "/api/ai-sdk/simple_assistant/chat"


def post(client: APIClient, messages: list, chat_id: str = "chat-1", path: str = CHAT, **body):
    return client.post(path, {"id": chat_id, "messages": messages, "trigger": "submit-message", **body}, format="json")


def session_of(user, chat_id: str, name: str = "simple_assistant") -> Session:
    chat_model = ChatModel.objects.get(name=name)
    return Session.objects.get(uuid=chats.session_uuid_for(chat_id, user=user, chat_model=chat_model))


def contents(session: Session) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in selectors.session_messages(session=session)]


# --- streamed runs (the run's thread writes, so these tests commit for real) ----------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_turn_streams_the_ui_message_parts_and_stores_only_what_is_new(make_chat_model, client_for, users):
    make_chat_model("simple_assistant")
    alice = client_for("alice")
    response = post(alice, [user_message("u-1", "hello")], temperature=0.5)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["x-vercel-ai-ui-message-stream"] == "v1"
    assert response["Cache-Control"] == "no-cache"
    parts = read_parts(response)
    session = session_of(users["alice"], "chat-1")
    assert response["X-Chatmodel-Session"] == str(session.uuid)
    run = Run.objects.get(session=session)
    assert parts[0] == {
        "type": "start",
        "messageId": str(run.uuid),
        "messageMetadata": {"sessionId": str(session.uuid), "runId": str(run.uuid)},
    }
    assert [p["type"] for p in parts[1:3]] == ["start-step", "text-start"]
    assert "".join(p["delta"] for p in parts if p != "[DONE]" and p["type"] == "text-delta") == (
        "Hello! What can I help you with?"
    )
    assert [p if p == "[DONE]" else p["type"] for p in parts[-4:]] == ["text-end", "finish-step", "finish", "[DONE]"]
    assert parts[-2]["finishReason"] == "stop"
    assert run.params.get("temperature") == 0.5  # the body's other keys are the run's parameters

    # The whole history again, with one new message: only that one is stored.
    reply = assistant_message(str(run.uuid), "Hello! What can I help you with?")
    history = [user_message("u-1", "hello"), reply, user_message("u-2", "tell me more")]
    assert read_parts(post(alice, history))[-1] == "[DONE]"
    assert contents(session) == [
        ("user", "hello"),
        ("assistant", "Hello! What can I help you with?"),
        ("user", "tell me more"),
        ("assistant", "You said: tell me more"),
    ]
    assert [m.metadata.get("ui_message_id") for m in Message.objects.filter(session=session, role="user")] == [
        "u-1",
        "u-2",
    ]

    # A client whose ids the server does not know (it got its history elsewhere): only its last message is new.
    foreign = [user_message("x-1", "hello"), assistant_message("x-2", "Hi"), user_message("x-3", "third")]
    assert read_parts(post(alice, foreign))[-1] == "[DONE]"
    assert contents(session)[-2:] == [("user", "third"), ("assistant", "You said: third")]

    # Sending it all again, with nothing new, answers nothing: the last message already has its reply.
    again = post(alice, [*history, assistant_message(str(Run.objects.filter(session=session).first().uuid), "x")])
    assert again.status_code == 400
    assert again["Chatmodel-Error-Code"] == "invalid_messages"
    assert len(contents(session)) == 6


@pytest.mark.django_db(transaction=True)
def test_regenerate_answers_the_last_message_again_and_keeps_the_old_reply(make_chat_model, client_for, users):
    make_chat_model("simple_assistant")
    alice = client_for("alice")
    first = read_parts(post(alice, [user_message("u-1", "say something")]))
    old_run = first[0]["messageId"]
    session = session_of(users["alice"], "chat-1")

    # With the reply still in the history, or a new message: not a regenerate of the last reply.
    with_reply = [user_message("u-1", "say something"), assistant_message(old_run, "You said: say something")]
    bad = alice.post(CHAT, {"id": "chat-1", "messages": with_reply, "trigger": "regenerate-message"}, format="json")
    assert bad.status_code == 400

    body = {
        "id": "chat-1",
        "messages": [user_message("u-1", "say something")],
        "trigger": "regenerate-message",
        "messageId": old_run,
    }
    parts = read_parts(alice.post(CHAT, body, format="json"))
    new_run = parts[0]["messageId"]
    assert new_run != old_run
    assert parts[-2]["type"] == "finish" and parts[-1] == "[DONE]"
    # The conversation now has the new reply; the old one is kept (another branch), with its run.
    assert contents(session) == [("user", "say something"), ("assistant", "You said: say something")]
    assert selectors.session_messages(session=session).last().run.uuid == uuid.UUID(new_run)
    assert Message.objects.filter(session=session, run__uuid=old_run).exists()
    # The history endpoint shows the current branch, with the ids the client knows.
    shown = alice.get(f"{CHAT}/chat-1/messages").json()
    assert [(m["id"], m["role"]) for m in shown] == [("u-1", "user"), (new_run, "assistant")]


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_is_an_error_part_without_the_provider_key(fake_chat_model, fake_llm, fake_key, client_for):
    fake_chat_model("simple_assistant")
    fake_llm.enqueue(FakeReply(fault="401_echo"))
    parts = read_parts(post(client_for("alice"), [user_message("u-1", "hi")]))
    assert [p if p == "[DONE]" else p["type"] for p in parts] == ["start", "start-step", "error", "[DONE]"]
    assert parts[2]["errorText"].startswith("authentication")
    assert fake_key not in parts[2]["errorText"]
    assert Run.objects.get().status == "failed"
    # The client retries with the same history: nothing new is stored, the unanswered message is answered.
    retry = read_parts(post(client_for("alice"), [user_message("u-1", "hi")]))
    assert retry[-2]["type"] == "finish" and retry[-1] == "[DONE]"
    assert [(m.role, m.content) for m in Message.objects.order_by("seq")] == [("user", "hi"), ("assistant", "Echo: hi")]


# --- refusals (nothing is run, nothing is stored) ---------------------------------------------------------------


@pytest.mark.django_db
def test_authentication_is_required(make_chat_model):
    make_chat_model("simple_assistant")
    anonymous = APIClient()
    assert post(anonymous, [user_message("u-1", "hi")]).status_code == 401
    assert anonymous.get(f"{CHAT}/chat-1/stream").status_code == 401
    assert anonymous.delete(f"{CHAT}/chat-1/stream").status_code == 401
    assert not Message.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": "", "messages": []}, "invalid_params"),
        ({"id": "c", "messages": [], "trigger": "resume"}, "invalid_params"),
        ({"id": "c", "messages": "hi"}, "invalid_messages"),
        ({"id": "c", "messages": [{"id": "u", "role": "user", "parts": "hi"}]}, "invalid_messages"),
        ({"id": "c", "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}, "invalid_messages"),
        # The system prompt is the version's; the roles a client may add are the REST API's.
        ({"id": "c", "messages": [{"id": "s", "role": "system", "parts": [{"type": "text", "text": "x"}]}]}, None),
        ({"id": "c", "messages": [{"id": "a", "role": "assistant", "parts": [{"type": "text", "text": "x"}]}]}, None),
        (
            {"id": "c", "messages": [{"id": "u", "role": "user", "parts": [{"type": "file", "url": "data:,x"}]}]},
            "invalid_messages",
        ),
        ({"id": "c", "messages": [user_message("u", "a\x00b")]}, "invalid_messages"),
        # Provider settings are the server's: refused as the REST API refuses them.
        ({"id": "c", "messages": [user_message("u", "hi")], "api_base": "http://evil.example/v1"}, "invalid_params"),
        ({"id": "c", "messages": [user_message("u", "hi")], "model": "openai/gpt-4o"}, "invalid_params"),
        ({"id": "c", "messages": [user_message("u", "hi")], "temperature": 9}, "invalid_params"),
        ({"id": str(uuid.UUID(int=0)), "messages": [user_message("u", "hi")]}, "invalid_params"),
    ],
)
def test_bad_input_is_a_400_and_stores_nothing(make_chat_model, client_for, body, code):
    make_chat_model("simple_assistant")
    response = client_for("alice").post(CHAT, body, format="json")
    assert response.status_code == 400, response.content
    assert response["Chatmodel-Error-Code"] == (code or "invalid_messages")
    assert not Message.objects.exists() and not Run.objects.exists()


@pytest.mark.django_db
def test_another_users_chat_is_404_through_every_url(make_chat_model, client_for, users):
    chat_model = make_chat_model("simple_assistant")
    make_chat_model("other_model")
    from chatmodel_app import services

    session = services.session_create(chat_model=chat_model, user=users["alice"])
    services.messages_add(session=session, messages=[{"role": "user", "content": "mine"}])
    chat_id = str(session.uuid)
    bob = client_for("bob")
    assert post(bob, [user_message("u-9", "hi")], chat_id=chat_id).status_code == 404
    assert bob.get(f"{CHAT}/{chat_id}/stream").status_code == 404
    assert bob.get(f"{CHAT}/{chat_id}/messages").status_code == 404
    assert bob.delete(f"{CHAT}/{chat_id}/stream").status_code == 404
    # Alice's own session under another chat model's URL: not a chat of that model.
    alice = client_for("alice")
    assert alice.get(f"/api/ai-sdk/other_model/chat/{chat_id}/messages").status_code == 404
    assert alice.get(f"/api/ai-sdk/no_such_model/chat/{chat_id}/messages").status_code == 404
    assert contents(session) == [("user", "mine")]
    # Ids that are not uuids are per user: the same id is another chat for another user.
    assert chats.session_uuid_for("c", user=users["alice"], chat_model=chat_model) != chats.session_uuid_for(
        "c", user=users["bob"], chat_model=chat_model
    )


@pytest.mark.django_db
def test_a_reader_may_read_a_chat_but_not_write_to_it(make_chat_model, client_for, users):
    chat_model = make_chat_model("simple_assistant")
    from chatmodel_app import services

    session = services.session_create(chat_model=chat_model, user=users["alice"])
    services.messages_add(session=session, messages=[{"role": "user", "content": "mine"}])
    staff = client_for("staff")  # holds view_session
    shown = staff.get(f"{CHAT}/{session.uuid}/messages")
    assert shown.status_code == 200 and [m["role"] for m in shown.json()] == ["user"]
    assert post(staff, [user_message("u-9", "hi")], chat_id=str(session.uuid)).status_code == 403
    assert staff.delete(f"{CHAT}/{session.uuid}/stream").status_code == 403


@pytest.mark.django_db
def test_a_chat_without_a_run_resumes_nothing_and_stops_nothing(make_chat_model, client_for):
    make_chat_model("simple_assistant")
    alice = client_for("alice")
    for chat_id in ("never-used", str(uuid.uuid4())):
        assert alice.get(f"{CHAT}/{chat_id}/stream").status_code == 204
        assert alice.get(f"{CHAT}/{chat_id}/messages").json() == []
        stop = alice.delete(f"{CHAT}/{chat_id}/stream")
        assert stop.json() == {"cancel_requested": False, "run_uuid": None, "status": None}
    assert not Session.objects.exists()  # reading and stopping create nothing


@pytest.mark.django_db
def test_a_busy_chat_is_409_and_the_message_waits_with_the_client(make_chat_model, client_for, users):
    make_chat_model("simple_assistant")
    chat_model = ChatModel.objects.get()
    from chatmodel_app import services

    sid = chats.session_uuid_for("chat-1", user=users["alice"], chat_model=chat_model)
    session = services.session_create(chat_model=chat_model, user=users["alice"], session_uuid=sid)
    later = timezone.now() + timedelta(minutes=5)
    Session.objects.filter(pk=session.pk).update(active_run_uuid=uuid.uuid4(), lease_expires_at=later)
    response = post(client_for("alice"), [user_message("u-1", "hi")])
    assert response.status_code == 409
    assert response["Chatmodel-Error-Code"] == "session_busy"
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_runs_are_throttled_as_on_the_other_doors(make_chat_model, client_for):
    make_chat_model("simple_assistant")
    rates = {"DEFAULT_THROTTLE_RATES": {"chatmodel_run": "0/minute"}}
    with override_settings(REST_FRAMEWORK=rates):
        response = post(client_for("alice"), [user_message("u-1", "hi")])
        assert response.status_code == 429
        # Resuming and stopping are not runs.
        assert client_for("alice").get(f"{CHAT}/chat-1/stream").status_code == 204
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_session_cookie_needs_the_csrf_header_on_writes(make_chat_model, users):
    make_chat_model("simple_assistant")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(users["alice"])
    assert client.get(f"{CHAT}/chat-1/stream").status_code == 204  # reads need no token
    refused = client.delete(f"{CHAT}/chat-1/stream")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert post(client, [user_message("u-1", "hi")]).status_code == 403
    secret = "a" * 32
    client.cookies["csrftoken"] = secret
    assert client.delete(f"{CHAT}/chat-1/stream", HTTP_X_CSRFTOKEN=secret).status_code == 200


@pytest.mark.django_db
def test_anonymous_callers_need_uuid_chat_ids(make_chat_model, settings):
    make_chat_model("simple_assistant")
    settings.CHATMODEL_API_ALLOW_ANONYMOUS = True
    response = post(APIClient(), [user_message("u-1", "hi")], chat_id="short-id")
    assert response.status_code == 400 and response["Chatmodel-Error-Code"] == "invalid_params"


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_stream_is_read_asynchronously_never_buffered(make_chat_model, users):
    """An async iterator under ASGI: Django would buffer a sync one whole before sending anything."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient
    from rest_framework.authtoken.models import Token

    await sync_to_async(make_chat_model)("simple_assistant")
    token = await sync_to_async(lambda: Token.objects.create(user=users["alice"]).key)()
    body = {"id": "chat-1", "messages": [user_message("u-1", "hello")], "trigger": "submit-message"}
    response = await AsyncClient().post(
        CHAT, body, content_type="application/json", headers={"Authorization": f"Token {token}"}
    )
    assert response.status_code == 200
    assert response.is_async
    raw = b"".join([chunk async for chunk in response.streaming_content])
    assert raw.endswith(b"data: [DONE]\n\n") and b'"type":"finish"' in raw


@pytest.mark.django_db
def test_a_tool_result_must_answer_a_call_of_the_reply_it_is_sent_with(make_chat_model, client_for, users):
    chat_model = make_chat_model("simple_assistant")
    from chatmodel_app import services

    sid = chats.session_uuid_for("chat-1", user=users["alice"], chat_model=chat_model)
    session = services.session_create(chat_model=chat_model, user=users["alice"], session_uuid=sid)
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    services.messages_add(
        session=session,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ],
    )
    # Stored messages with no id of the client's are known by their seq (as GET .../messages shows them).
    shown = client_for("alice").get(f"{CHAT}/chat-1/messages").json()
    assert [(m["id"], m["parts"][-1]["type"]) for m in shown] == [("seq-1", "text"), ("seq-2", "tool-get_weather")]
    reply = shown[1]
    reply["parts"][-1].update(toolCallId="call_other", state="output-available", output="sunny")
    response = post(client_for("alice"), [shown[0], reply])
    assert response.status_code == 400 and response["Chatmodel-Error-Code"] == "invalid_messages"
    assert Message.objects.filter(session=session).count() == 2


@pytest.mark.django_db(transaction=True)
async def test_a_resumed_stream_that_misses_its_runs_end_ends_from_the_stored_run(make_chat_model, users):
    """The run ended as the stream joined (or the channel layer dropped its last event): at the next keep-alive
    the stream ends from the Run row, with the rest of the stored reply, instead of waiting forever."""
    import asyncio

    from asgiref.sync import sync_to_async

    from chatmodel_app import services
    from chatmodel_app.ai_sdk import views, wire

    def setup():
        chat_model = make_chat_model("simple_assistant")
        session = services.session_create(chat_model=chat_model, user=users["alice"])
        run = Run.objects.create(session=session, version=session.version, status="completed", finish_reason="stop")
        Message.objects.create(session=session, seq=1, role="assistant", content="You said: a b", run=run)
        return session, run

    session, run = await sync_to_async(setup)()
    translator = wire.Translator()
    snapshot = {"type": "run.snapshot", "session_uuid": str(session.uuid), "run_id": str(run.uuid), "seq": 3}

    async def stuck():
        yield translator({**snapshot, "content": "You said: a", "tool_call_deltas": []})
        yield b": keepalive\n\n"
        await asyncio.Event().wait()  # the run's last event never comes

    raw = b"".join([chunk async for chunk in views._watched(stuck(), translator, run.pk)])
    text = "".join(p["delta"] for p in read_parts_bytes(raw) if p != "[DONE]" and p["type"] == "text-delta")
    assert text == "You said: a b"
    assert raw.endswith(b"data: [DONE]\n\n") and b'"finishReason":"stop"' in raw


def read_parts_bytes(raw: bytes) -> list:
    class Response:
        streaming_content = [raw]

    return read_parts(Response)
