"""The pytest fixtures: one fake server per test session, reset around each test that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeLLMServer


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    """One fake LLM server started for the whole test session."""
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The session fake LLM server, reset before and after the test."""
    fake_llm_server.reset()
    try:
        yield fake_llm_server
    finally:
        fake_llm_server.reset()
