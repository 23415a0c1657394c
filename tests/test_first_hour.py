"""The first hour in a new site (issue 16): what a new user hits, each fixed and shown here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app import ChatModel
from chatmodel_app.models import Message, Run
from chatmodel_app.testing import FakeReply

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
# DRF's own ISO 8601, in UTC: "2024-05-01T12:00:00.123456Z".
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def client_of(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


# --- item 2: the schema whatever the host's DRF settings -------------------------------------------------------

SCHEMA_PROBE = """
import django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
assert "DEFAULT_SCHEMA_CLASS" not in settings.REST_FRAMEWORK
assert "drf_spectacular" not in settings.INSTALLED_APPS
response = Client().get("/api/schema/", {"format": "json"})
print(response.status_code)
print(sorted(response.json()["paths"])[0] if response.status_code == 200 else response.content[:300])
"""


def test_the_schema_answers_without_drf_spectacular_settings(tmp_path):
    # In a fresh process: drf-spectacular's decorators read DRF's DEFAULT_SCHEMA_CLASS when views.py is imported,
    # so override_settings in this process could not show what a host without the setting gets.
    (tmp_path / "plain_drf_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "REST_FRAMEWORK = {k: v for k, v in REST_FRAMEWORK.items() if k != 'DEFAULT_SCHEMA_CLASS'}  # noqa: F405\n"
        "INSTALLED_APPS = [a for a in INSTALLED_APPS if a != 'drf_spectacular']  # noqa: F405\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "DJANGO_SETTINGS_MODULE": "plain_drf_settings"}
    result = subprocess.run(
        [sys.executable, "-c", SCHEMA_PROBE], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["200", "/api/chat-models/"], result.stdout


# --- item 4: the 403 of a session with no owner ------------------------------------------------------------------


def test_a_reader_of_a_session_without_owner_is_told_how_to_own_one(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hi"}])
    admin = User.objects.create_superuser("root")
    client = client_of(admin)
    url = f"/api/sessions/{session.session_uuid}/"
    assert client.get(url).status_code == 200  # may read
    response = client.post(f"{url}messages/", {"messages": [{"role": "user", "content": "x"}]}, format="json")
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "Staff" not in detail
    assert "no user" in detail and "user=" in detail


# --- item 11: no count limit for trusted Python code ---------------------------------------------------------------


def test_python_add_messages_has_no_count_limit_but_rest_keeps_it(make_chat_model, settings):
    settings.CHATMODEL_MAX_MESSAGES_PER_REQUEST = 5
    make_chat_model()
    many = [{"role": "user", "content": f"message {i}"} for i in range(12)]
    session = ChatModel("simple_assistant")
    assert len(session.add_messages(many)) == 12
    assert Message.objects.filter(session__uuid=session.session_uuid).count() == 12

    owner = User.objects.create_user("owner")
    client = client_of(owner)
    created = client.post("/api/chat-models/simple_assistant/sessions/", {}, format="json").json()["uuid"]
    response = client.post(f"/api/sessions/{created}/messages/", {"messages": many}, format="json")
    assert response.status_code == 400
    assert "at most 5" in response.content.decode()


# --- item 13: message_logs entries all have content ------------------------------------------------------------


def test_message_logs_of_tool_calls_have_a_content_key(make_chat_model):
    make_chat_model()
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    session = ChatModel("simple_assistant")
    added = session.add_messages(
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        ]
    )
    logs = session.get_config().message_logs
    for entries in (added, logs):
        assert [(m["role"], m["content"]) for m in entries] == [
            ("user", "Weather?"),
            ("assistant", None),
            ("tool", "sunny"),
        ]
        assert entries[1]["tool_calls"] == [call]


# --- item 14: a stopped run counts the prompt it sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "stop", "status"),
    [
        # The caller stops reading (a closed page, the Stop button): cancelled, with no usage from the provider.
        (FakeReply(content=" ".join(f"w{i}" for i in range(40))), True, Run.Status.CANCELLED),
        # The provider cuts the stream: incomplete.
        (FakeReply(content="one two three four five", fault="cut", cut_after=2), False, Run.Status.INCOMPLETE),
    ],
)
def test_a_stopped_run_records_the_prompt_tokens_it_sent(fake_chat_model, fake_llm, reply, stop, status):
    fake_chat_model()
    fake_llm.token_delay = 0.05
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Tell me a long story about a lighthouse keeper"}])
    fake_llm.enqueue(reply)
    stream = session.run(stream=True)
    first = next(stream)
    if stop:
        stream.close()
    else:
        list(stream)
    run = Run.objects.get(uuid=first.run_uuid)
    assert run.status == status
    assert run.estimated_prompt_tokens > 0
    assert run.prompt_tokens == run.estimated_prompt_tokens


def test_a_completed_run_keeps_the_providers_count(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello there"}])
    fake_llm.enqueue(FakeReply(content="Hi", prompt_tokens=1234, completion_tokens=1))
    response = session.run()
    assert Run.objects.get(uuid=response.run_uuid).prompt_tokens == 1234


# --- item 15: a run on a session with no messages ------------------------------------------------------------------


def test_run_on_an_empty_session_is_refused_before_the_model_is_called(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    response = session.run()
    assert response.error and response.error_code == "no_messages"
    assert "add_messages" in response.error_log
    stream = list(session.run(stream=True))
    assert stream[-1].error_code == "no_messages"
    assert not Run.objects.exists()
    # Once it has a message, it runs.
    session.add_messages([{"role": "user", "content": "Hi"}])
    assert not session.run().error


def test_rest_run_on_an_empty_session_is_a_400_with_its_code(make_chat_model):
    make_chat_model()
    client = client_of(User.objects.create_user("owner"))
    created = client.post("/api/chat-models/simple_assistant/sessions/", {}, format="json").json()["uuid"]
    response = client.post(f"/api/sessions/{created}/run/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["error_code"] == "no_messages"
    assert not Run.objects.exists()


# --- item 17: one timestamp format ------------------------------------------------------------------------------


def test_sessions_and_messages_write_timestamps_alike(make_chat_model):
    make_chat_model()
    client = client_of(User.objects.create_user("owner"))
    created = client.post("/api/chat-models/simple_assistant/sessions/", {}, format="json").json()
    added = client.post(
        f"/api/sessions/{created['uuid']}/messages/",
        {"messages": [{"role": "user", "content": "Hi"}]},
        format="json",
    ).json()
    listed = client.get(f"/api/sessions/{created['uuid']}/messages/").json()
    stamps = [created["created_at"], added["messages"][0]["created_at"], listed["results"][0]["created_at"]]
    assert all(ISO_Z.match(stamp) for stamp in stamps), stamps


def test_run_events_write_message_timestamps_like_the_api(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hi"}])
    final = list(session.run(stream=True))[-1]
    [completed] = [event for event in final.events if event["type"] == "run.completed"]
    assert ISO_Z.match(completed["message"]["created_at"])


@pytest.mark.django_db(transaction=True)
async def test_websocket_run_on_an_empty_session_is_refused(make_chat_model):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from chatmodel_app import services
    from example_project.asgi import application

    @database_sync_to_async
    def owned_session():
        user = User.objects.create_user("owner")
        session = services.session_create(chat_model=make_chat_model(), user=user)
        return session.uuid, Token.objects.create(user=user).key

    session_uuid, token = await owned_session()
    communicator = WebsocketCommunicator(
        application, f"/ws/chatmodel/sessions/{session_uuid}/", headers=[(b"authorization", f"Token {token}".encode())]
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "run", "request_id": "r1"})
    while (event := await communicator.receive_json_from(timeout=10))["type"] != "error":
        pass
    assert (event["code"], event["request_id"]) == ("no_messages", "r1")
    await communicator.disconnect()
    assert not await database_sync_to_async(Run.objects.exists)()
