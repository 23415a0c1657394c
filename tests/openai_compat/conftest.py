"""Fixtures of the OpenAI-compatible door's tests: users with DRF tokens, and the real ``openai`` client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from rest_framework.authtoken.models import Token

from chatmodel_app.api import sse


@pytest.fixture(autouse=True)
def _clean(transactional_db):
    # Depends on the database so that streamed runs are waited for before it is reset.
    cache.clear()
    yield
    assert sse.wait_idle(15), "a streamed run was still going at the end of the test"
    cache.clear()


def _token(name: str) -> str:
    user = User.objects.create_user(name)
    return Token.objects.create(user=user).key


@pytest.fixture
def alice_token(transactional_db) -> str:
    return _token("alice")


@pytest.fixture
def bob_token(transactional_db) -> str:
    return _token("bob")


@pytest.fixture
def openai_for(live_server):
    """``openai_for(token)``: the real ``openai.OpenAI`` client of the live server's /v1, no retries."""
    import openai

    clients = []

    def make(token: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=token, max_retries=0, timeout=30)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def alice(openai_for, alice_token):
    return openai_for(alice_token)


@pytest.fixture
def bob(openai_for, bob_token):
    return openai_for(bob_token)
