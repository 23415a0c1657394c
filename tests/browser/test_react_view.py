"""The React page's view without a browser (Django's test client): what it hands the React app, and to whom.

The page itself, in Chromium, is tests/browser/test_react_page.py.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.contrib.auth import get_user_model

from example_project.settings import TEMPLATES as EXAMPLE_TEMPLATES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def example_site(settings):
    # tests.settings has neither the example site's template directory nor its urls.
    settings.TEMPLATES = EXAMPLE_TEMPLATES
    settings.ROOT_URLCONF = "example_project.urls"


@pytest.fixture
def alice(client):
    user = get_user_model().objects.create_user("alice", password="alice")
    client.force_login(user)
    return user


def _config(response) -> dict | None:
    match = re.search(r'<script id="react-config" type="application/json">(.*?)</script>', response.content.decode())
    return json.loads(match.group(1)) if match else None


def test_the_react_page_asks_for_a_login_first(client):
    response = client.get("/react/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/react/"


def test_a_new_chat_gets_a_fresh_uuid_and_the_endpoint_of_its_chat_model(client, alice, make_chat_model):
    make_chat_model("a_draft_only", published=False)
    make_chat_model("simple_assistant")
    response = client.get("/react/")
    assert response.status_code == 200
    config = _config(response)
    assert config is not None
    assert config["chatModel"] == "simple_assistant"  # the first one with a published version
    assert config["api"] == "/api/ai-sdk/simple_assistant/chat"
    assert config["resume"] is False
    assert uuid.UUID(config["chatId"]).version == 4
    assert config["newChatUrl"] == "/react/?chat_model=simple_assistant"
    assert config["csrfToken"]
    assert 'src="/static/example/react/react-chat.js"' in response.content.decode()
    assert _config(client.get("/react/?chat_model=simple_assistant"))["chatId"] != config["chatId"]

    # A chat model with no published version cannot start a chat: the page says so and loads no app.
    draft = client.get("/react/?chat_model=a_draft_only")
    assert draft.status_code == 200
    assert _config(draft) is None
    assert "No chat model has a published version" in draft.content.decode()
    assert client.get("/react/?chat_model=nope").status_code == 404


def test_a_chat_of_yours_reopens_for_resuming_and_anyone_elses_is_404(client, alice, make_chat_model):
    make_chat_model("simple_assistant")
    created = client.post("/api/chat-models/simple_assistant/sessions/", {}, content_type="application/json")
    assert created.status_code == 201, created.content
    session_uuid = created.json()["uuid"]

    config = _config(client.get(f"/react/?session={session_uuid}"))
    assert config is not None
    assert config["chatId"] == session_uuid
    assert config["resume"] is True
    assert config["chatModel"] == "simple_assistant"

    bob = get_user_model().objects.create_user("bob", password="bob")
    client.force_login(bob)
    assert client.get(f"/react/?session={session_uuid}").status_code == 404
    assert client.get("/react/?session=not-a-uuid").status_code == 404
    assert client.get(f"/react/?session={uuid.uuid4()}").status_code == 404


def test_the_chat_page_links_to_the_react_page(client, alice, make_chat_model):
    make_chat_model("simple_assistant")
    page = client.get("/?chat_model=simple_assistant").content.decode()
    assert 'href="/react/?chat_model=simple_assistant" data-testid="react-link"' in page
