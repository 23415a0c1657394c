"""Fake OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

The server speaks real HTTP so that litellm/openai/httpx are exercised end to end, and can be
scripted to reply with text, tool calls, or faults (rate limits, server errors, timeouts, cut or
malformed streams). Only the standard library is imported at module import time; the pytest
fixtures ``fake_llm_server`` and ``fake_llm`` are defined only when pytest is importable, so host
projects can use ``pytest_plugins = ["chatmodel_app.testing"]``.

The package: ``replies`` (what it answers), ``handler`` (its HTTP side), ``server``
(``FakeLLMServer``), ``fixtures`` (the pytest fixtures).
"""

from __future__ import annotations

import importlib.util

from .handler import ChatCompletionsHandler as _Handler  # noqa: F401  (bench/fake_server.py tunes it)
from .replies import FAULTS, FakeReply, echo_reply, split_into_chunks
from .server import FakeLLMServer, refused_url

__all__ = [
    "FAULTS",
    "FakeLLMServer",
    "FakeReply",
    "echo_reply",
    "refused_url",
    "split_into_chunks",
]

# Fixtures only when pytest is available, so the package stays importable in production code.
if importlib.util.find_spec("pytest") is not None:
    from .fixtures import fake_llm, fake_llm_server  # noqa: F401  (pytest finds fixtures on the plugin module)
