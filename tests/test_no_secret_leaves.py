"""Issue 19 item 1, end to end: a provider error that echoes the key leaves it in no response, event, admin page,
log line or stored row, whichever door ran the model."""

from __future__ import annotations

import json
import logging

import pytest
from django.core import serializers as django_serializers
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app import ChatModel, llm
from chatmodel_app.models import Message, Run, Session
from chatmodel_app.testing import FakeReply
from tests.test_consumers import _communicator, _until

KEY = "zz-live-key-5a4b3c2d1e0f"  # not sk- shaped: only scrubbing by value catches it
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _litellm_loaded():
    llm.get_litellm()


@pytest.fixture
def setup(make_chat_model, fake_llm, monkeypatch, django_user_model):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    make_chat_model(model="openai/fake-model", params={"api_base": fake_llm.url})
    admin = django_user_model.objects.create_superuser("root", password="pw")
    return admin, Token.objects.create(user=admin).key


def _stored_rows() -> str:
    rows = [*Run.objects.all(), *Message.objects.all(), *Session.objects.all()]
    return django_serializers.serialize("json", rows)


def test_an_echoed_key_leaves_no_door_and_no_row(setup, fake_llm, caplog, client):
    admin, token = setup
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    # Python
    for _ in range(2):
        fake_llm.enqueue(FakeReply(fault="401_echo"))
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hi"}])
    res = session.run()
    assert res.error_code == "authentication"
    seen.append(json.dumps(res.to_dict(), default=str))
    seen.append(json.dumps([c.to_dict() for c in session.run(stream=True)], default=str))

    # REST: JSON and SSE
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    created = api.post("/api/chat-models/simple_assistant/sessions/", {}, format="json").json()["uuid"]
    api.post(f"/api/sessions/{created}/messages/", {"messages": [{"role": "user", "content": "Hi"}]}, format="json")
    for stream in (False, True):
        fake_llm.enqueue(FakeReply(fault="401_echo"))
        response = api.post(f"/api/sessions/{created}/run/", {"stream": stream}, format="json")
        seen.append(b"".join(response.streaming_content).decode() if stream else response.content.decode())

    # The websocket's events
    async def websocket_run() -> list[dict]:
        fake_llm.enqueue(FakeReply(fault="401_echo"))
        socket = _communicator(created, token=token)
        connected, _ = await socket.connect()
        assert connected
        await socket.send_json_to({"type": "run"})
        events = await _until(socket, "run.failed", "run.completed", "error")
        await socket.disconnect()
        return events

    from asgiref.sync import async_to_sync

    seen.append(json.dumps(async_to_sync(websocket_run)()))

    # The admin's run and session pages
    client.force_login(admin)
    for run in Run.objects.all():
        seen.append(client.get(f"/admin/chatmodel_app/run/{run.pk}/change/").content.decode())
    for row in Session.objects.all():
        seen.append(client.get(f"/admin/chatmodel_app/session/{row.pk}/change/").content.decode())
    seen.append(client.get("/admin/chatmodel_app/run/").content.decode())

    assert fake_llm.requests and all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in fake_llm.requests)
    assert Run.objects.filter(error="authentication").count() >= 4
    everything = "\n".join([*seen, _stored_rows(), caplog.text])
    assert "Incorrect API key provided" in everything  # the provider's words did come through
    assert KEY not in everything and KEY[3:15] not in everything
