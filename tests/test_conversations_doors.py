"""Named conversations and feedback through the REST API and the websocket: every door, ownership, validation."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app import consumers, services
from chatmodel_app.models import Feedback, Message, Run, Session
from example_project.asgi import application


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


def _client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def people(db, make_chat_model):
    make_chat_model()
    return User.objects.create_user("alice"), User.objects.create_user("bob")


def _answered(client, text="Hello"):
    """A session of the client's user with one exchange; its uuid and the reply's seq."""
    uuid = client.post("/api/chat-models/simple_assistant/sessions/", {}, format="json").json()["uuid"]
    assert (
        client.post(
            f"/api/sessions/{uuid}/messages/", {"messages": [{"role": "user", "content": text}]}, format="json"
        ).status_code
        == 201
    )
    run = client.post(f"/api/sessions/{uuid}/run/", {}, format="json")
    assert run.status_code == 200, run.content
    return uuid, run.json()["message_seq"]


# --- REST: feedback -----------------------------------------------------------------------------------------


def test_rest_feedback_put_get_delete(people):
    alice = _client(people[0])
    uuid, seq = _answered(alice)
    url = f"/api/sessions/{uuid}/messages/{seq}/feedback/"
    assert alice.get(url).json() == {"message_seq": seq, "feedback": None}
    put = alice.put(url, {"rating": "up", "comment": "great"}, format="json")
    assert put.status_code == 200
    assert put.json()["feedback"]["rating"] == "up" and put.json()["feedback"]["comment"] == "great"
    again = alice.put(url, {"rating": -1}, format="json").json()["feedback"]
    assert (again["rating"], again["comment"]) == ("down", "")
    assert alice.get(url).json()["feedback"]["rating"] == "down"
    page = alice.get(f"/api/sessions/{uuid}/messages/").json()["results"]
    assert [m.get("feedback", {}) and m["feedback"]["rating"] for m in page if m["seq"] == seq] == ["down"]
    assert alice.delete(url).status_code == 204
    assert Feedback.objects.count() == 0
    assert alice.delete(url).status_code == 204  # taking back nothing is no error


def test_rest_feedback_is_only_for_the_sessions_user(people):
    alice, bob = _client(people[0]), _client(people[1])
    uuid, seq = _answered(alice)
    url = f"/api/sessions/{uuid}/messages/{seq}/feedback/"
    for call in (bob.get(url), bob.put(url, {"rating": "up"}, format="json"), bob.delete(url)):
        assert call.status_code == 404
        assert call["Chatmodel-Error-Code"] == "session_not_found"
    assert APIClient().put(url, {"rating": "up"}, format="json").status_code in (401, 403)
    assert Feedback.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": "meh"}, "rating"),
        ({}, "rating"),
        ({"rating": True}, "rating"),
        ({"rating": "up", "comment": "x" * 2001}, "comment"),
        ({"rating": "up", "comment": 3}, "comment"),
        ({"rating": "up", "extra": 1}, "extra"),
    ],
)
def test_rest_feedback_validation(people, body, field):
    alice = _client(people[0])
    uuid, seq = _answered(alice)
    response = alice.put(f"/api/sessions/{uuid}/messages/{seq}/feedback/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert response["Chatmodel-Error-Code"] == "invalid_params"


def test_rest_feedback_on_a_user_message_or_no_message(people):
    alice = _client(people[0])
    uuid, seq = _answered(alice)
    on_user = alice.put(f"/api/sessions/{uuid}/messages/1/feedback/", {"rating": "up"}, format="json")
    assert on_user.status_code == 400 and "seq" in on_user.json()
    for missing in ("99", "0", "abc", "-1"):
        response = alice.put(f"/api/sessions/{uuid}/messages/{missing}/feedback/", {"rating": "up"}, format="json")
        assert response.status_code == 404
        assert response["Chatmodel-Error-Code"] == "message_not_found"


# --- REST: rename, archive, delete, list, search --------------------------------------------------------------


def test_rest_rename_archive_unarchive(people):
    alice = _client(people[0])
    uuid, _seq = _answered(alice, "tell me about whales")
    shown = alice.get(f"/api/sessions/{uuid}/").json()
    assert (shown["title"], shown["title_source"], shown["archived"]) == ("Tell me about whales", "auto", False)
    renamed = alice.patch(f"/api/sessions/{uuid}/", {"title": "  Whales\nand dolphins "}, format="json")
    assert renamed.status_code == 200
    assert (renamed.json()["title"], renamed.json()["title_source"]) == ("Whales and dolphins", "user")
    archived = alice.patch(f"/api/sessions/{uuid}/", {"archived": True}, format="json").json()
    assert archived["archived"] is True and archived["archived_at"]
    assert uuid not in [s["uuid"] for s in alice.get("/api/sessions/").json()["results"]]
    assert uuid in [s["uuid"] for s in alice.get("/api/sessions/", {"archived": "true"}).json()["results"]]
    assert uuid in [s["uuid"] for s in alice.get("/api/sessions/", {"archived": "all"}).json()["results"]]
    assert alice.patch(f"/api/sessions/{uuid}/", {"archived": False}, format="json").json()["archived"] is False
    assert uuid in [s["uuid"] for s in alice.get("/api/sessions/").json()["results"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"archived": "yes"}, "archived"),
        ({"model": "gpt"}, "model"),
    ],
)
def test_rest_update_validation(people, body, field):
    alice = _client(people[0])
    uuid, _ = _answered(alice)
    response = alice.patch(f"/api/sessions/{uuid}/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert Session.objects.get(uuid=uuid).title_source == "auto"


def test_rest_update_and_delete_are_only_for_the_owner(people):
    alice, bob = _client(people[0]), _client(people[1])
    uuid, _ = _answered(alice)
    assert bob.patch(f"/api/sessions/{uuid}/", {"title": "mine now"}, format="json").status_code == 404
    assert bob.delete(f"/api/sessions/{uuid}/").status_code == 404
    assert Session.objects.get(uuid=uuid).title != "mine now"


def test_rest_delete_removes_everything_and_refuses_a_busy_session(people):
    alice = _client(people[0])
    uuid, seq = _answered(alice)
    alice.put(f"/api/sessions/{uuid}/messages/{seq}/feedback/", {"rating": "up"}, format="json")
    other, _ = _answered(alice)
    busy = Session.objects.get(uuid=other)
    from chatmodel_app.services import leases

    assert leases.take(session_id=busy.pk, run_uuid=__import__("uuid").uuid4())
    refused = alice.delete(f"/api/sessions/{other}/")
    assert refused.status_code == 409 and refused["Chatmodel-Error-Code"] == "session_busy"
    assert alice.delete(f"/api/sessions/{uuid}/").status_code == 204
    assert not Session.objects.filter(uuid=uuid).exists()
    assert not Message.objects.filter(session__uuid=uuid).exists() and Feedback.objects.count() == 0
    assert alice.get(f"/api/sessions/{uuid}/").status_code == 404
    assert Session.objects.filter(uuid=other).exists()


def test_rest_list_is_by_last_activity(people):
    alice = _client(people[0])
    first, _ = _answered(alice, "first chat")
    second, _ = _answered(alice, "second chat")
    assert [s["uuid"] for s in alice.get("/api/sessions/").json()["results"]][:2] == [second, first]
    time.sleep(0.01)
    alice.post(f"/api/sessions/{first}/messages/", {"messages": [{"role": "user", "content": "back"}]}, format="json")
    listed = alice.get("/api/sessions/").json()["results"]
    assert [s["uuid"] for s in listed][:2] == [first, second]
    assert listed[0]["last_activity_at"] > listed[1]["last_activity_at"]
    page = alice.get("/api/sessions/", {"limit": 1}).json()
    assert [s["uuid"] for s in page["results"]] == [first]
    assert [s["uuid"] for s in alice.get(page["next"]).json()["results"]] == [second]


def test_rest_search_by_title_and_content(people):
    alice, bob = _client(people[0]), _client(people[1])
    whales, _ = _answered(alice, "Tell me about whales")
    lisbon, _ = _answered(alice, "plan a trip")
    alice.post(
        f"/api/sessions/{lisbon}/messages/",
        {"messages": [{"role": "user", "content": "Lisbon museums"}]},
        format="json",
    )
    _answered(bob, "whales for bob")
    alice.patch(f"/api/sessions/{whales}/", {"title": "Ocean giants"}, format="json")

    def found(q, **extra):
        return [s["uuid"] for s in alice.get("/api/sessions/", {"q": q, **extra}).json()["results"]]

    assert found("ocean") == [whales]  # the title
    assert found("whales") == [whales]  # a message (and bob's session stays his)
    assert found("museums") == [lisbon]
    assert found("nothing like this") == []
    alice.patch(f"/api/sessions/{whales}/", {"archived": True}, format="json")
    assert found("whales") == [] and found("whales", archived="all") == [whales]
    too_long = alice.get("/api/sessions/", {"q": "x" * 201})
    assert too_long.status_code == 400 and "q" in too_long.json()
    assert alice.get("/api/sessions/", {"archived": "maybe"}).status_code == 400


def test_the_schema_describes_the_new_operations(db):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert {"patch", "delete"} <= set(paths["/api/sessions/{uuid}/"])
    assert {"get", "put", "delete"} <= set(paths["/api/sessions/{uuid}/messages/{seq}/feedback/"])
    names = {p["name"] for p in paths["/api/sessions/"]["get"]["parameters"]}
    assert {"q", "archived"} <= names


# --- websocket --------------------------------------------------------------------------------------------


async def _until(communicator, *types, timeout=10.0):
    received = []
    deadline = time.monotonic() + timeout
    while True:
        event = await communicator.receive_json_from(timeout=max(0.01, deadline - time.monotonic()))
        received.append(event)
        if event["type"] in types:
            return received


@pytest.mark.django_db(transaction=True)
async def test_websocket_feedback_and_update_session(make_chat_model):
    chat_model = await database_sync_to_async(make_chat_model)()
    owner = await database_sync_to_async(User.objects.create_user)("owner")
    token = (await database_sync_to_async(Token.objects.create)(user=owner)).key
    session = await database_sync_to_async(services.session_create)(chat_model=chat_model, user=owner)
    headers = [(b"authorization", f"Token {token}".encode())]
    ws = WebsocketCommunicator(application, f"/ws/chatmodel/sessions/{session.uuid}/", headers=headers)
    assert (await ws.connect())[0]
    try:
        await ws.send_json_to({"type": "add_messages", "messages": [{"role": "user", "content": "Hello"}]})
        await ws.send_json_to({"type": "run", "stream": False})
        completed = (await _until(ws, "run.completed"))[-1]
        seq = completed["message"]["seq"]
        # A run started on the socket titles the session too (the offline title, inline, before run.completed).
        titled = await database_sync_to_async(Session.objects.get)(pk=session.pk)
        assert (titled.title, titled.title_source) == ("Hello", "auto")

        await ws.send_json_to({"type": "feedback", "seq": seq, "rating": "up", "comment": "nice"})
        event = (await _until(ws, "feedback.updated", "error"))[-1]
        assert event["type"] == "feedback.updated"
        assert event["message_seq"] == seq and event["feedback"]["rating"] == "up"
        await ws.send_json_to({"type": "feedback", "seq": seq, "rating": "sideways", "request_id": 7})
        error = (await _until(ws, "error"))[-1]
        assert (error["code"], error["request_id"]) == ("invalid_params", 7)
        await ws.send_json_to({"type": "feedback", "seq": seq, "rating": None})
        assert (await _until(ws, "feedback.updated"))[-1]["feedback"] is None
        assert await database_sync_to_async(Feedback.objects.count)() == 0

        await ws.send_json_to({"type": "update_session", "title": "Greetings", "archived": True})
        updated = (await _until(ws, "session.updated"))[-1]
        assert (updated["title"], updated["title_source"], updated["archived"]) == ("Greetings", "user", True)
        await ws.send_json_to({"type": "update_session", "title": "x" * 300})
        assert (await _until(ws, "error"))[-1]["code"] == "invalid_params"
    finally:
        await ws.disconnect()
        pending = set(consumers._runs)
        if pending:
            await asyncio.wait(pending, timeout=15)
    stored = await database_sync_to_async(Session.objects.get)(pk=session.pk)
    assert stored.title == "Greetings" and stored.archived_at is not None
    assert await database_sync_to_async(Run.objects.filter(session=stored).count)() == 1


# --- Python over HTTP (ChatModel with a base_url) -------------------------------------------------------------


def test_chatmodel_over_http_rates_renames_archives_and_deletes(live_server, transactional_db, make_chat_model):
    from chatmodel_app import ChatModel
    from chatmodel_app.exceptions import InvalidParams, MessageNotFound, SessionNotFound

    make_chat_model()
    user = User.objects.create_user("remote")
    key = Token.objects.create(user=user).key
    remote = ChatModel("simple_assistant", base_url=live_server.url, api_key=key)
    remote.add_messages([{"role": "user", "content": "remote greetings to you"}])
    res = remote.run()
    assert not res.error
    given = remote.feedback(res.message_seq, "down", comment="meh")
    assert (given["rating"], given["comment"]) == ("down", "meh") and given["updated_at"]
    stored = Feedback.objects.get()
    assert (stored.rating, stored.comment, stored.user) == (-1, "meh", user)
    with pytest.raises(InvalidParams):
        remote.feedback(res.message_seq, "sideways")
    with pytest.raises(MessageNotFound):
        remote.feedback(99, "up")
    assert remote.feedback(res.message_seq, None) is None
    assert Feedback.objects.count() == 0

    info = remote.get_session()
    assert (info["title"], info["title_source"], info["archived"]) == ("Remote greetings to you", "auto", False)
    assert remote.rename("Remote")["title"] == "Remote"
    assert remote.archive()["archived"] is True
    assert remote.unarchive()["archived"] is False
    with pytest.raises(InvalidParams):
        remote.rename("x" * 201)
    remote.delete()
    assert not Session.objects.filter(uuid=remote.session_uuid).exists()
    with pytest.raises(SessionNotFound):
        remote.get_session()
