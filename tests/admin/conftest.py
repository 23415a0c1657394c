"""Fixtures of the admin tests: a chat model with v1, a staff editor, a conversation with runs."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from chatmodel_app import services
from chatmodel_app.models import ChatModel, Message, Session, Version

from .helpers import add_run


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # admin_user's password is hashed on creation: the default hasher's cost is a second a test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def chat_model(make_chat_model) -> ChatModel:
    return make_chat_model("simple_assistant", system_prompt="You are a helpful assistant.")


@pytest.fixture
def v1(chat_model) -> Version:
    return chat_model.versions.get(number=1)


@pytest.fixture
def staff(db):
    """A staff user who may view and edit versions, but not publish them."""
    user = get_user_model().objects.create_user("editor", password="pw", is_staff=True)
    codenames = ["view_chatmodel", "change_chatmodel", "view_version", "add_version", "change_version"]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="chatmodel_app", codename__in=codenames)
    )
    return user


@pytest.fixture
def conversation(v1, admin_user):
    """A session with a user turn, a function call, its result, a reply, and a failed run."""
    session = services.session_create(chat_model=v1.chat_model, version=v1, user=admin_user)
    services.messages_add(session=session, messages=[{"role": "user", "content": "Weather in Boston?"}])
    call_run = add_run(session)
    Message.objects.create(
        session=session,
        seq=2,
        role="assistant",
        content=None,
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Boston"}'},
            }
        ],
        run=call_run,
        token_count=12,
    )
    Message.objects.create(
        session=session, seq=3, role="tool", content="13 degrees", tool_call_id="call_1", name="get_weather"
    )
    reply_run = add_run(session, prompt=30, completion=8, cost=0.002)
    Message.objects.create(
        session=session, seq=4, role="assistant", content="It is 13 degrees in Boston.", run=reply_run
    )
    add_run(
        session,
        status="failed",
        prompt=None,
        completion=None,
        cost=None,
        error="rate_limit",
        error_log="Slow down.",
        last_seq=4,
    )
    Session.objects.filter(pk=session.pk).update(next_seq=5, summary="They asked about Boston.", summary_until_seq=1)
    session.refresh_from_db()
    return session
