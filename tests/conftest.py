"""Shared fixtures. No test may reach past loopback: a guard refuses other addresses."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")

pytest_plugins = ["chatmodel_app.testing"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address) -> None:
    if not isinstance(address, tuple):
        return  # unix sockets
    host = address[0]
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host in ("localhost",):
            return
    raise OSError(f"tests must not use the network: connection to {address!r} refused by tests/conftest.py")


def _guarded_connect(self, address):
    _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex

FAKE_KEY = "sk-fake-test-key-0123456789"


@pytest.fixture
def make_chat_model(db):
    """Factory: a chat model with one version (published unless told otherwise)."""
    from chatmodel_app.models import ChatModel, Version
    from chatmodel_app.services import version_create

    def make(
        name: str = "simple_assistant",
        *,
        system_prompt: str = "You are a helpful assistant.",
        model: str = "offline/demo",
        published: bool = True,
        ratio: float = 1.0,
        **fields,
    ) -> ChatModel:
        chat_model, _ = ChatModel.objects.get_or_create(name=name)
        params = fields.pop("params", {})
        tools = fields.pop("tools", None)
        version = version_create(
            chat_model=chat_model, system_prompt=system_prompt, model=model, params=params, tools=tools
        )
        Version.objects.filter(pk=version.pk).update(is_published=published, ratio=ratio, **fields)
        return chat_model

    return make


@pytest.fixture
def fake_key(monkeypatch):
    """The API key the fake server's chat models use, from the environment as in production."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def fake_chat_model(make_chat_model, fake_llm, fake_key):
    """Factory: a chat model whose version calls the fake OpenAI-compatible server over HTTP."""

    def make(name: str = "simple_assistant", **kwargs):
        params = {"api_base": fake_llm.url, **kwargs.pop("params", {})}
        return make_chat_model(name, model="openai/fake-model", params=params, **kwargs)

    return make
