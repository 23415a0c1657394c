"""Prompt variables and labels through every door: REST, the ChatModel HTTP transport, the websocket, OpenAI's API.

(The Python door over the ORM is in tests/services/test_variables.py and test_labels.py.)
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app import ChatModel, consumers, services
from chatmodel_app.api import sse
from chatmodel_app.exceptions import InvalidParams
from chatmodel_app.models import ChatModel as ChatModelRow
from chatmodel_app.models import Session
from chatmodel_app.services.labels import label_move
from example_project.asgi import application

PROMPT = "You help {{ customer_name }}. Tone: {{ tone }}."
DECLARED = [{"name": "customer_name", "required": True}, {"name": "tone", "default": "warm"}]


def _support(api_base: str | None = None) -> ChatModelRow:
    """Chat model "support": v1 (published) uses the variables; v2 (label staging) is plain."""
    chat_model = ChatModelRow.objects.create(name="support")
    model = "openai/fake-model" if api_base else "offline/demo"
    params = {"api_base": api_base} if api_base else {}
    v1 = services.version_create(
        chat_model=chat_model, system_prompt=PROMPT, model=model, params=params, variables=DECLARED
    )
    services.version_publish(version=v1)
    services.version_create(chat_model=chat_model, system_prompt="Staging prompt.", model=model, params=params)
    label_move(chat_model=chat_model, label="staging", ratios={2: 1})
    return chat_model


@pytest.fixture
def alice(db):
    cache.clear()
    user = User.objects.create_user("alice")
    # The config endpoint needs chatmodel_app.view_version (CHATMODEL_API_CONFIG_PERMISSION).
    user.user_permissions.add(Permission.objects.get(content_type__app_label="chatmodel_app", codename="view_version"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    yield client
    assert sse.wait_idle(10)
    cache.clear()


def _create(client: APIClient, body: dict):
    return client.post("/api/chat-models/support/sessions/", body, format="json")


# --- REST ----------------------------------------------------------------------------------------------------


def test_rest_session_create_takes_variables_and_shows_them(alice, fake_llm, fake_key):
    _support(fake_llm.url)
    response = _create(alice, {"variables": {"customer_name": "Ada"}})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["variables"] == {"customer_name": "Ada", "tone": "warm"} and body["version"] == 1
    session_uuid = body["uuid"]
    config = alice.get("/api/chat-models/support/config/", {"session_uuid": session_uuid})
    assert config.json()["system_prompt"] == "You help Ada. Tone: warm."
    # Without a session, the template as written.
    assert alice.get("/api/chat-models/support/config/").json()["system_prompt"] == PROMPT
    alice.post(
        f"/api/sessions/{session_uuid}/messages/", {"messages": [{"role": "user", "content": "Hi"}]}, format="json"
    )
    run = alice.post(f"/api/sessions/{session_uuid}/run/", {}, format="json")
    assert run.status_code == 200, run.json()
    assert fake_llm.last_request["body"]["messages"][0] == {"role": "system", "content": "You help Ada. Tone: warm."}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (None, "Missing required variable: customer_name"),
        ({}, "Missing required variable: customer_name"),
        ({"customer_name": "Ada", "colour": "red"}, "Unknown variables: colour"),
        ({"customer_name": 7}, "must be text"),
        ({"customer_name": ["Ada"]}, "must be text"),
        ({"customer_name": "a\u0000b"}, "NUL"),
        ({"customer_name": "x" * 10_001}, "characters long"),
    ],
)
def test_rest_refuses_bad_variables_at_session_creation(alice, variables, message):
    _support()
    body = {} if variables is None else {"variables": variables}
    response = _create(alice, body)
    assert response.status_code == 400
    assert response["Chatmodel-Error-Code"] == "invalid_params"
    assert message in response.json()["variables"][0]
    assert not Session.objects.exists()


def test_rest_variables_must_be_an_object(alice):
    _support()
    response = _create(alice, {"variables": ["customer_name"]})
    assert response.status_code == 400 and "variables" in response.json()


def test_rest_values_for_an_existing_session_must_match(alice):
    _support()
    chosen = str(uuid.uuid4())
    assert _create(alice, {"uuid": chosen, "variables": {"customer_name": "Ada"}}).status_code == 201
    assert _create(alice, {"uuid": chosen}).status_code == 200
    assert _create(alice, {"uuid": chosen, "variables": {"customer_name": "Ada"}}).status_code == 200
    differ = _create(alice, {"uuid": chosen, "variables": {"customer_name": "Bob"}})
    assert differ.status_code == 400 and "already exists" in differ.json()["variables"][0]
    # Someone else's session: the one answer for any unusable uuid, whatever the values (its existence stays hidden).
    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=User.objects.create_user('bob')).key}")
    for values in ({"customer_name": "Bob"}, {"customer_name": "Ada"}):
        refused = _create(bob, {"uuid": chosen, "variables": values})
        assert refused.status_code == 400 and "cannot be used for a new session" in refused.json()["uuid"][0]


def test_rest_accepts_labels_as_version_specs(alice):
    _support()
    response = _create(alice, {"version": "staging"})
    assert response.status_code == 201 and response.json()["version"] == 2
    assert response.json()["variables"] == {}  # v2 declares none
    config = alice.get("/api/chat-models/support/config/", {"version": "staging"}).json()
    assert config["version_detail"]["version"] == 2
    production = _create(alice, {"version": "production", "variables": {"customer_name": "Ada"}})
    assert production.status_code == 201 and production.json()["version"] == 1
    unknown = _create(alice, {"version": "canary"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "version_not_found"
    malformed = _create(alice, {"version": "Not a label!"})
    assert malformed.status_code == 400 and "label name" in malformed.json()["version"][0]
    # The OpenAPI schema documents the label form of a version spec and the variables of a session.
    schema = alice.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "^[a-z][a-z0-9_-]{0,49}$" in text and "prompt variables" in text


# --- the ChatModel HTTP transport, against a live server ------------------------------------------------------


@pytest.fixture
def site(live_server, transactional_db, fake_llm, fake_key):
    cache.clear()
    _support(fake_llm.url)
    user = User.objects.create_user("app")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="chatmodel_app", codename="view_version"))
    yield live_server.url, Token.objects.create(user=user).key
    assert sse.wait_idle(10)
    cache.clear()


def test_http_transport_passes_variables_and_labels(site, fake_llm):
    url, key = site
    session = ChatModel("support", base_url=url, api_key=key, variables={"customer_name": "Grace"})
    session.add_messages([{"role": "user", "content": "Hello"}])
    res = session.run()
    assert not res.error, res.error_log
    assert fake_llm.last_request["body"]["messages"][0]["content"] == "You help Grace. Tone: warm."
    assert session.get_config().system_prompt == "You help Grace. Tone: warm."
    # Values again for the same session: the same are fine, others are refused.
    ChatModel("support", session.session_uuid, base_url=url, api_key=key, variables={"customer_name": "Grace"}).run()
    other = ChatModel("support", session.session_uuid, base_url=url, api_key=key, variables={"customer_name": "X"})
    with pytest.raises(InvalidParams, match="already exists"):
        other.add_messages([{"role": "user", "content": "Hi"}])
    # A missing required variable: InvalidParams from add_messages, an error response from run.
    missing = ChatModel("support", base_url=url, api_key=key)
    with pytest.raises(InvalidParams, match="Missing required variable: customer_name"):
        missing.add_messages([{"role": "user", "content": "Hi"}])
    res = ChatModel("support", base_url=url, api_key=key).run()
    assert res.error and res.error_code == "invalid_params" and "customer_name" in res.error_log
    # A label.
    staging = ChatModel("support", base_url=url, api_key=key, version="staging")
    assert staging.get_config().version == 2
    staging.add_messages([{"role": "user", "content": "Hi"}])
    assert not staging.run().error
    assert fake_llm.last_request["body"]["messages"][0]["content"] == "Staging prompt."


# --- the websocket: sessions are made elsewhere; their runs send the rendered prompt ---------------------------


async def _until(communicator, *types, timeout=10.0):
    received = []
    deadline = time.monotonic() + timeout
    while True:
        event = await communicator.receive_json_from(timeout=max(0.1, deadline - time.monotonic()))
        received.append(event)
        if event["type"] in types:
            return received


@pytest.mark.django_db(transaction=True)
async def test_websocket_runs_use_the_session_values_and_label_version(fake_llm, fake_key):
    def setup():
        _support(fake_llm.url)
        user = User.objects.create_user("owner")
        chat_model = ChatModelRow.objects.get(name="support")
        with_values = services.session_create(chat_model=chat_model, user=user, variables={"customer_name": "Lin"})
        on_label = services.session_create(chat_model=chat_model, user=user, version="staging")
        return with_values, on_label, Token.objects.create(user=user).key

    with_values, on_label, token = await database_sync_to_async(setup)()
    headers = [(b"authorization", f"Token {token}".encode())]
    for session, system, version in ((with_values, "You help Lin. Tone: warm.", 1), (on_label, "Staging prompt.", 2)):
        communicator = WebsocketCommunicator(application, f"/ws/chatmodel/sessions/{session.uuid}/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "add_messages", "messages": [{"role": "user", "content": "Hi"}]})
        await _until(communicator, "messages.added")
        await communicator.send_json_to({"type": "run", "stream": True})
        events = await _until(communicator, "run.completed", "run.failed")
        assert events[-1]["type"] == "run.completed", events[-1]
        assert events[0]["version"] == version
        assert fake_llm.last_request["body"]["messages"][0]["content"] == system
        await communicator.disconnect()
    pending = set(consumers._runs)
    if pending:
        await asyncio.wait(pending, timeout=15)


# --- the OpenAI-compatible door: model "name@label" -------------------------------------------------------------


def test_openai_door_accepts_a_label_and_refuses_a_missing_required_variable(alice):
    _support()
    staging = alice.post(
        "/v1/chat/completions",
        {"model": "support@staging", "messages": [{"role": "user", "content": "Hi"}]},
        format="json",
    )
    assert staging.status_code == 200, staging.content
    assert staging.json()["model"] == "support@2"
    # "deploy" is v1, whose prompt needs customer_name: a clear 400 before any run, not a failed run.
    refused = alice.post(
        "/v1/chat/completions",
        {"model": "support", "messages": [{"role": "user", "content": "Hi"}]},
        format="json",
    )
    assert refused.status_code == 400
    assert "customer_name" in refused.content.decode()
    assert not Session.objects.filter(version__number=1).exists()
