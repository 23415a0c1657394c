"""Branches through every door: Python ChatModel (ORM and HTTP), REST, websocket; and the migration."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app import ChatModel
from chatmodel_app.models import Message, Session
from chatmodel_app.testing import FakeReply


def _sent(fake_llm) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake_llm.last_request["body"]["messages"] if m["role"] != "system"]


def _contents(path) -> list[str]:
    return [m["content"] for m in path]


# --- Python: ChatModel over the ORM and over HTTP ------------------------------------------------------------


@pytest.fixture(params=["orm", "http"])
def make_session(request, fake_chat_model, django_user_model):
    fake_chat_model("simple_assistant")
    if request.param == "orm":
        return lambda: ChatModel("simple_assistant", version="latest")
    live_server = request.getfixturevalue("live_server")
    user = django_user_model.objects.create_user("py")
    key = Token.objects.create(user=user).key
    return lambda: ChatModel("simple_assistant", version="latest", base_url=live_server.url, api_key=key)


@pytest.mark.django_db(transaction=True)
def test_chatmodel_regenerate_edit_switch_fork(make_session, fake_llm):
    chat = make_session()
    chat.add_messages([{"role": "user", "content": "Q1"}])
    fake_llm.enqueue(FakeReply(content="A1"))
    assert chat.run().content == "A1"

    fake_llm.enqueue(FakeReply(content="A1 again"))
    res = chat.regenerate()
    assert not res.error and res.content == "A1 again"
    assert _sent(fake_llm) == [("user", "Q1")]
    path = chat.get_path()
    assert _contents(path) == ["Q1", "A1 again"]
    assert path[1]["alternatives"] == {"index": 1, "count": 2} and path[0]["alternatives"] is None
    if chat.base_url is None:  # over HTTP, get_config needs CHATMODEL_API_CONFIG_PERMISSION
        assert [m["content"] for m in chat.get_config().message_logs] == ["Q1", "A1 again"]
        with pytest.warns(DeprecationWarning):
            assert [m["content"] for m in chat.get_messages()][1:] == ["Q1", "A1 again"]

    path = chat.switch_branch(path[1]["seq"], 0)
    assert _contents(path) == ["Q1", "A1"] and path[1]["alternatives"] == {"index": 0, "count": 2}

    fake_llm.enqueue(FakeReply(content="B1"))
    chunks = list(chat.edit_message(path[0]["seq"], "Q1 edited", stream=True))
    assert chunks[-1].is_final and not chunks[-1].error
    assert "".join(c.content or "" for c in chunks[:-1]) == "B1"
    assert _sent(fake_llm) == [("user", "Q1 edited")]
    path = chat.get_path()
    assert _contents(path) == ["Q1 edited", "B1"] and path[0]["alternatives"] == {"index": 1, "count": 2}

    fork = chat.fork(path[0]["seq"])
    assert fork.session_uuid != chat.session_uuid
    assert _contents(fork.get_path()) == ["Q1 edited"]
    fake_llm.enqueue(FakeReply(content="forked"))
    assert fork.run().content == "forked"
    assert _contents(chat.get_path()) == ["Q1 edited", "B1"]


@pytest.mark.django_db(transaction=True)
def test_chatmodel_regenerate_on_a_busy_session_is_an_error_response(make_session):
    chat = make_session()
    chat.add_messages([{"role": "user", "content": "Q1"}])
    chat.run()
    Session.objects.filter(uuid=chat.session_uuid).update(
        active_run_uuid=uuid.uuid4(), lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    res = chat.regenerate()
    assert res.error and res.error_code == "session_busy"
    assert Session.objects.get(uuid=chat.session_uuid).branches == []


# --- REST ---------------------------------------------------------------------------------------------------


@pytest.fixture
def api(db, django_user_model):
    def client_of(name):
        user = django_user_model.objects.create_user(name)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        return client

    return client_of


@pytest.mark.django_db(transaction=True)
def test_rest_branches(api, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant")
    alice, bob = api("alice"), api("bob")
    uid = alice.post("/api/chat-models/simple_assistant/sessions/", {}, format="json").json()["uuid"]
    base = f"/api/sessions/{uid}"
    alice.post(f"{base}/messages/", {"messages": [{"role": "user", "content": "Q1"}]}, format="json")
    fake_llm.enqueue(FakeReply(content="A1"))
    assert alice.post(f"{base}/run/", {}, format="json").json()["content"] == "A1"

    fake_llm.enqueue(FakeReply(content="A1b"))
    response = alice.post(f"{base}/regenerate/", {"temperature": 0.3}, format="json")
    assert response.status_code == 200 and response.json()["content"] == "A1b"
    assert fake_llm.last_request["body"]["temperature"] == 0.3
    page = alice.get(f"{base}/messages/").json()["results"]
    assert _contents(page) == ["Q1", "A1b"] and page[1]["alternatives"] == {"index": 1, "count": 2}

    response = alice.post(f"{base}/messages/{page[1]['seq']}/switch/", {"index": 0}, format="json")
    assert response.status_code == 200 and _contents(response.json()["messages"]) == ["Q1", "A1"]
    assert alice.post(f"{base}/messages/2/switch/", {"index": 5}, format="json").status_code == 400
    assert alice.post(f"{base}/messages/99/switch/", {"index": 0}, format="json").status_code == 404

    response = alice.post(f"{base}/messages/1/edit/", {"content": "Q1 edited", "run": False}, format="json")
    assert response.status_code == 201
    assert _contents(response.json()["messages"]) == ["Q1 edited"]
    assert response.json()["messages"][0]["alternatives"] == {"index": 1, "count": 2}
    # An assistant message cannot be edited; the model's settings cannot be given.
    assert alice.post(f"{base}/messages/2/edit/", {"content": "x"}, format="json").status_code in (400, 404)
    assert alice.post(f"{base}/regenerate/", {"model": "gpt-4"}, format="json").status_code == 400

    # A streamed regenerate: the edited question has no reply yet, so this simply answers it.
    fake_llm.enqueue(FakeReply(content="streamed"))
    response = alice.post(f"{base}/regenerate/", {"stream": True}, format="json")
    body = b"".join(response.streaming_content).decode()
    assert "run.completed" in body and "streamed" in body
    assert _contents(alice.get(f"{base}/path/").json()["messages"]) == ["Q1 edited", "streamed"]

    # Another user's session does not exist for bob.
    for path in ("regenerate/", "messages/1/edit/", "messages/1/switch/", "fork/"):
        assert bob.post(f"{base}/{path}", {"content": "x", "index": 0, "seq": 1}, format="json").status_code == 404

    # A busy session: 409 under reject.
    Session.objects.filter(uuid=uid).update(
        active_run_uuid=uuid.uuid4(), lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    response = alice.post(f"{base}/regenerate/", {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "session_busy"
    assert alice.post(f"{base}/messages/1/edit/", {"content": "y"}, format="json").status_code == 409
    Session.objects.filter(uuid=uid).update(active_run_uuid=None, lease_expires_at=None)

    response = alice.post(f"{base}/fork/", {"seq": 4}, format="json")  # "Q1 edited"
    assert response.status_code == 201
    new = response.json()["session"]["uuid"]
    assert new != uid and _contents(response.json()["messages"]) == ["Q1 edited"]
    assert _contents(alice.get(f"/api/sessions/{new}/messages/").json()["results"]) == ["Q1 edited"]


@pytest.mark.django_db
def test_openapi_schema_lists_the_branch_endpoints(api):
    schema = api("reader").get("/api/schema/?format=json").json()
    for path in ("regenerate/", "messages/{seq}/edit/", "messages/{seq}/switch/", "fork/", "path/"):
        assert f"/api/sessions/{{uuid}}/{path}" in schema["paths"]
    assert "alternatives" in schema["components"]["schemas"]["Message"]["properties"]


# --- websocket ----------------------------------------------------------------------------------------------


async def _until(communicator, *types, timeout=15.0):
    received = []
    deadline = time.monotonic() + timeout
    while True:
        event = await communicator.receive_json_from(timeout=max(0.1, deadline - time.monotonic()))
        received.append(event)
        if event["type"] in types:
            return received


@pytest.mark.django_db(transaction=True)
async def test_websocket_regenerate_edit_switch(make_chat_model, django_user_model):
    from chatmodel_app import services
    from example_project.asgi import application

    def setup():
        owner = django_user_model.objects.create_user("owner")
        chat_model = make_chat_model("simple_assistant")
        session = services.session_create(chat_model=chat_model, user=owner)
        services.messages_add(session=session, messages=[{"role": "user", "content": "Hello"}])
        services.run(session=session)
        return session, Token.objects.create(user=owner).key

    session, token = await database_sync_to_async(setup)()
    communicator = WebsocketCommunicator(
        application, f"/ws/chatmodel/sessions/{session.uuid}/", headers=[(b"authorization", f"Token {token}".encode())]
    )
    connected, _ = await communicator.connect()
    assert connected

    await communicator.send_json_to({"type": "regenerate", "stream": False, "request_id": 1})
    events = await _until(communicator, "run.completed", "run.failed", "error")
    types = [e["type"] for e in events]
    assert "session.path_changed" in types and types[-1] == "run.completed"
    assert events[-1]["message"]["seq"] == 3

    await communicator.send_json_to({"type": "switch_branch", "seq": 3, "index": 0, "request_id": 2})
    events = await _until(communicator, "session.path", "error")
    assert events[-1]["type"] == "session.path" and events[-1]["request_id"] == 2
    path = events[-1]["messages"]
    assert [m["seq"] for m in path] == [1, 2] and path[1]["alternatives"] == {"index": 0, "count": 2}

    await communicator.send_json_to({"type": "edit_message", "seq": 1, "content": "Hi there", "stream": True})
    events = await _until(communicator, "run.completed", "run.failed", "error")
    assert events[-1]["type"] == "run.completed"
    assert events[-1]["message"]["content"]

    await communicator.send_json_to({"type": "get_path", "request_id": 3})
    path = (await _until(communicator, "session.path"))[-1]["messages"]
    assert path[0]["content"] == "Hi there" and path[0]["alternatives"] == {"index": 1, "count": 2}

    await communicator.send_json_to({"type": "switch_branch", "seq": path[0]["seq"], "index": 7})
    error = (await _until(communicator, "error"))[-1]
    assert error["code"] == "invalid_params"
    await communicator.disconnect()


# --- migration ----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_existing_sessions_migrate_as_single_branch_histories():
    executor = MigrationExecutor(connection)
    executor.migrate([("chatmodel_app", "0005_variables_labels")])
    apps = executor.loader.project_state([("chatmodel_app", "0005_variables_labels")]).apps
    OldChatModel = apps.get_model("chatmodel_app", "ChatModel")
    OldVersion = apps.get_model("chatmodel_app", "Version")
    OldSession = apps.get_model("chatmodel_app", "Session")
    OldMessage = apps.get_model("chatmodel_app", "Message")
    cm = OldChatModel.objects.create(name="old")
    version = OldVersion.objects.create(chat_model=cm, number=1, model="offline/demo")
    session = OldSession.objects.create(chat_model=cm, version=version, next_seq=4)
    for seq, (role, text) in enumerate([("user", "a"), ("assistant", "b"), ("user", "c")], start=1):
        OldMessage.objects.create(session=session, seq=seq, role=role, content=text)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    migrated = Session.objects.get(pk=session.pk)
    assert migrated.branch == 0 and migrated.branches == []
    assert list(Message.objects.filter(session=migrated).values_list("branch", flat=True)) == [0, 0, 0]
    from chatmodel_app import selectors
    from chatmodel_app.services.branches import message_edit

    assert [m.content for m in selectors.session_messages(session=migrated)] == ["a", "b", "c"]
    message_edit(session=migrated, seq=3, content="c2")
    assert [m.content for m in selectors.session_messages(session=migrated)] == ["a", "b", "c2"]
    assert json.dumps(Session.objects.get(pk=session.pk).branches)


# --- admin --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_session_page_shows_the_current_path_and_marks_alternatives(client, admin_user, make_chat_model):
    from chatmodel_app import services
    from chatmodel_app.services.branches import message_edit

    session = services.session_create(chat_model=make_chat_model("simple_assistant"))
    services.messages_add(session=session, messages=[{"role": "user", "content": "old question"}])
    services.run(session=session)
    message_edit(session=session, seq=1, content="new question")
    client.force_login(admin_user)
    page = client.get(f"/admin/chatmodel_app/session/{session.pk}/change/").content.decode()
    assert "new question" in page and "old question" not in page
    assert "alternative 2/2" in page
