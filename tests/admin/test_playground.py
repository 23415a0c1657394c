"""The playground pages (the browser test chats in one)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from chatmodel_app import services
from chatmodel_app.models import Message, Session

from .helpers import add_run, draft, url

pytestmark = pytest.mark.django_db


def test_playground_starts_a_marked_session_on_a_draft(admin_client, admin_user, v1):
    v2 = draft(v1.chat_model, "Draft under test.")
    page = admin_client.get(url("version_change", v2.pk)).content.decode()
    assert f'action="{url("version_playground", v2.pk)}"' in page
    response = admin_client.post(url("version_playground", v2.pk))
    session = Session.objects.get()
    assert response["Location"] == url("version_playground_session", v2.pk, session.uuid)
    assert (session.version, session.is_playground, session.user) == (v2, True, admin_user)
    html = admin_client.get(response["Location"]).content.decode()
    for testid in ("playground-input", "playground-send", "playground-messages", "playground-status"):
        assert f'data-testid="{testid}"' in html
    assert f"/ws/chatmodel/sessions/{session.uuid}/" in html
    assert "Draft under test." in html


def test_playground_shows_earlier_turns_with_tokens_and_cost(admin_client, admin_user, v1):
    session = services.session_create(chat_model=v1.chat_model, version=v1, user=admin_user, is_playground=True)
    services.messages_add(session=session, messages=[{"role": "user", "content": "Hi"}])
    run = add_run(session, prompt=7, completion=3, cost=0.0005)
    Message.objects.create(session=session, seq=2, role="assistant", content="Hello!", run=run)
    html = admin_client.get(url("version_playground_session", v1.pk, session.uuid)).content.decode()
    assert "Hello!" in html
    assert re.search(r'data-testid="playground-tokens"[^>]*>\s*7 in / 3 out', html)
    assert re.search(r'data-testid="playground-cost"[^>]*>\s*\$0.000500', html)


def test_playground_is_staff_only_and_private(client, admin_client, staff, v1):
    session = services.session_create(chat_model=v1.chat_model, version=v1, user=staff, is_playground=True)
    user = get_user_model().objects.create_user("customer", password="pw")
    client.force_login(user)
    assert client.post(url("version_playground", v1.pk)).status_code == 302  # to the admin login
    assert not Session.objects.filter(user=user).exists()
    other = get_user_model().objects.create_user("other-staff", password="pw", is_staff=True)
    other.user_permissions.set(Permission.objects.filter(codename="view_version"))
    client.force_login(other)
    assert client.get(url("version_playground_session", v1.pk, session.uuid)).status_code == 404
    client.force_login(staff)
    assert client.get(url("version_playground_session", v1.pk, session.uuid)).status_code == 200
    # A normal session is not a playground.
    normal = services.session_create(chat_model=v1.chat_model, version=v1, user=staff)
    assert client.get(url("version_playground_session", v1.pk, normal.uuid)).status_code == 404
