"""Fixtures of the AI SDK door's tests: users, clients, and reading a UI message stream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chatmodel_app.api import sse


@pytest.fixture(autouse=True)
def _fresh_throttles_and_streams(db):
    cache.clear()  # throttle counters live in the cache
    yield
    assert sse.wait_idle(10), "a streamed run was still going at the end of the test"
    cache.clear()


@pytest.fixture
def users(db):
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    staff = User.objects.create_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(content_type__app_label="chatmodel_app", codename="view_session"))
    return {"alice": alice, "bob": bob, "staff": staff}


@pytest.fixture
def client_for(users):
    """An APIClient authenticated with the user's DRF token (None: not authenticated)."""

    def make(name: str | None) -> APIClient:
        client = APIClient()
        if name is not None:
            token, _ = Token.objects.get_or_create(user=users[name])
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def read_parts(response) -> list[Any]:
    """The parts of a UI message stream response: each ``data:`` JSON, and "[DONE]" as the string."""
    body = b"".join(response.streaming_content).decode()
    parts: list[Any] = []
    for block in body.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                parts.append(data if data == "[DONE]" else json.loads(data))
    return parts


def user_message(message_id: str, text: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def assistant_message(message_id: str, text: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "role": "assistant",
        "parts": [{"type": "step-start"}, {"type": "text", "text": text, "state": "done"}],
    }
