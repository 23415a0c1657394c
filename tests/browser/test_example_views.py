"""The example site's views without a browser: who sees which chat page, and the runs endpoint behind it.

These use Django's test client and pytest-django's database, not the live server.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model

from example_project.settings import TEMPLATES as EXAMPLE_TEMPLATES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def example_templates(settings):
    # tests.settings has neither the example site's template directory nor its urls (the chat page).
    settings.TEMPLATES = EXAMPLE_TEMPLATES
    settings.ROOT_URLCONF = "example_project.urls"


@pytest.fixture
def alice(client):
    user = get_user_model().objects.create_user("alice", password="alice")
    client.force_login(user)
    return user


def _config(response) -> dict:
    match = re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "the page has no chat-config"
    return json.loads(match.group(1))


def _session_with_a_run(client, name: str = "simple_assistant") -> str:
    created = client.post(f"/api/chat-models/{name}/sessions/", {}, content_type="application/json")
    assert created.status_code == 201, created.content
    uuid = created.json()["uuid"]
    added = client.post(
        f"/api/sessions/{uuid}/messages/",
        {"messages": [{"role": "user", "content": "Hello"}]},
        content_type="application/json",
    )
    assert added.status_code == 201, added.content
    ran = client.post(f"/api/sessions/{uuid}/run/", {}, content_type="application/json")
    assert ran.status_code == 200, ran.content
    return uuid


def test_the_chat_page_asks_for_a_login_first(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


@pytest.mark.parametrize("debug", [True, False])
def test_the_login_page_names_the_demo_account_only_in_development(client, settings, debug):
    settings.DEBUG = debug
    response = client.get("/login/")
    assert response.status_code == 200
    assert ("demo</strong> / <strong>demo" in response.content.decode()) is debug


def test_the_chat_page_lists_chat_models_and_starts_on_a_published_one(client, alice, make_chat_model):
    make_chat_model("a_draft_only", published=False)
    make_chat_model("simple_assistant")
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-name="a_draft_only"' in page and "no published version" in page
    config = _config(response)
    assert config["chatModel"] == "simple_assistant"
    assert config["canStart"] is True
    assert config["session"] is None
    assert config["createSessionUrl"] == "/api/chat-models/simple_assistant/sessions/"
    assert config["clientUrl"].endswith("chatmodel_app/chatmodel.js")

    draft = client.get("/?chat_model=a_draft_only")
    assert _config(draft)["canStart"] is False
    assert client.get("/?chat_model=nope").status_code == 404


def test_the_chat_page_resumes_only_your_own_sessions(client, alice, make_chat_model):
    make_chat_model("simple_assistant")
    uuid = _session_with_a_run(client)
    response = client.get(f"/?session={uuid}")
    assert response.status_code == 200
    assert _config(response)["session"] == {"uuid": uuid, "chat_model": "simple_assistant", "version": 1}
    assert f'data-uuid="{uuid}"' in response.content.decode()  # in the recent chats

    bob = get_user_model().objects.create_user("bob", password="bob")
    client.force_login(bob)
    assert client.get(f"/?session={uuid}").status_code == 404
    assert client.get("/?session=not-a-uuid").status_code == 404
    assert client.get("/?session=0b7d1e36-9c1f-4a51-9c8a-1d2f3e4a5b6c").status_code == 404


def test_the_runs_endpoint_gives_tokens_cost_and_outcome_of_your_session(client, alice, make_chat_model):
    make_chat_model("simple_assistant")
    uuid = _session_with_a_run(client)
    response = client.get(f"/chat/runs/{uuid}/")
    assert response.status_code == 200
    (run,) = response.json()["results"]
    assert run["status"] == "completed"
    assert run["prompt_tokens"] > 0 and run["completion_tokens"] > 0
    assert run["cost"] == 0.0
    assert run["last_seq"] == 1
    assert run["error"] == ""

    bob = get_user_model().objects.create_user("bob", password="bob")
    client.force_login(bob)
    assert client.get(f"/chat/runs/{uuid}/").status_code == 404
    client.logout()
    assert client.get(f"/chat/runs/{uuid}/").status_code == 302


def test_recent_chats_are_labelled_by_their_first_message_and_empty_ones_are_left_out(client, alice, make_chat_model):
    make_chat_model("simple_assistant")
    uuid = _session_with_a_run(client)
    # A chat whose first message was refused: it has no message, so it is no chat to go back to.
    empty = client.post("/api/chat-models/simple_assistant/sessions/", {}, content_type="application/json")
    page = client.get("/?chat_model=simple_assistant").content.decode()
    links = re.findall(
        # The label is the chat's title (named conversations), else its first message.
        r'data-testid="session-link" data-uuid="([^"]+)"[^>]*>\s*<span class="label"[^>]*>([^<]*)</span>',
        page,
    )
    assert links == [(uuid, "Hello")]
    assert empty.json()["uuid"] not in page


def test_the_page_knows_the_message_size_limit(client, alice, make_chat_model, settings):
    settings.CHATMODEL_MAX_MESSAGE_CHARS = 1234
    make_chat_model("simple_assistant")
    assert _config(client.get("/"))["maxMessageChars"] == 1234


def test_the_site_has_a_favicon(client, alice, make_chat_model):
    make_chat_model("simple_assistant")
    page = client.get("/").content.decode()
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page).group(1)
    assert icon.endswith("example/favicon.svg")
    redirect = client.get("/favicon.ico")
    assert redirect.status_code == 302 and redirect["Location"] == icon


def test_the_api_link_leads_to_a_readable_page_or_says_it_is_yaml(client, alice, make_chat_model):
    make_chat_model("simple_assistant")
    page = client.get("/").content.decode()
    link = re.search(r'<a href="([^"]+)" data-testid="schema-link"[^>]*>([^<]+)</a>', page)
    href, label = link.groups()
    response = client.get(href)
    assert response.status_code == 200
    if label == "API docs":
        assert response["Content-Type"].startswith("text/html")
        assert "swagger-ui" in response.content.decode()
    else:
        assert label == "API schema (YAML)"
        assert response.content.startswith(b"openapi: 3.1.0")
