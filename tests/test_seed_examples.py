"""Every code example of the seed documentation (shared/seed/chatmodel-docs.txt), run as written.

Each test body between ``# --- seed ---`` and ``# --- end ---`` is copied verbatim from
the seed (tabs included); only what the seed leaves undefined is set up around it
(``session_uuid``, ``get_weather_function``, the chat models). Each runs on the offline
demo model and on the fake OpenAI-compatible server over real HTTP.
"""

from __future__ import annotations

import json
import warnings

import pytest

from chatmodel_app import ChatModel
from chatmodel_app.models import Message
from chatmodel_app.testing import FakeReply
from chatmodel_app.types import ChatModelConfig, FunctionCall, LLMResponse, LLMStreamResponse

get_weather_function = {
    "name": "get_weather",
    "description": "Get the current weather in a location",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "City name"}},
        "required": ["location"],
    },
}


class Backend:
    """Where the examples' chat models run: the offline demo model, or the fake server over HTTP."""

    def __init__(self, name, make, fake_llm, transport="orm"):
        self.name = name
        self.make = make
        self.fake_llm = fake_llm
        self.transport = transport

    def check_transport(self, session: ChatModel) -> None:
        """The session really went through the transport under test."""
        from chatmodel_app.models import Session

        owner = Session.objects.select_related("user").get(uuid=session.session_uuid).user
        if self.transport == "http":
            assert type(session._transport).__name__ == "HttpTransport"
            assert owner is not None and owner.username == "remote-app"  # created by the REST API's token user
        else:
            assert type(session._transport).__name__ == "OrmTransport" and owner is None

    def chat_models(self, *names):
        for name in names:
            self.make(name)

    def script(self, *replies: FakeReply) -> None:
        """Script the fake server's next replies (the offline model answers by itself)."""
        if self.name == "fake":
            for reply in replies:
                self.fake_llm.enqueue(reply)


# The HTTP transport talks to a live server of the example project's URLs, which must see
# committed data: those cases use a transactional test database.
_REMOTE = pytest.mark.django_db(transaction=True)


@pytest.fixture(
    params=[
        "offline-orm",
        "fake-orm",
        pytest.param("offline-http", marks=_REMOTE),
        pytest.param("fake-http", marks=_REMOTE),
    ]
)
def backend(request, make_chat_model, fake_chat_model, fake_llm, monkeypatch):
    """A chat-model backend and a ChatModel transport: in-process ORM, or HTTP to a live server."""
    model, transport = request.param.split("-")
    make = make_chat_model if model == "offline" else fake_chat_model
    backend = Backend(model, make, fake_llm, transport)
    backend.chat_models("simple_assistant", "say_hello_bot", "example")
    if transport == "http":
        # The examples stay as written: ChatModel(...) picks the HTTP transport from the environment.
        from django.contrib.auth.models import Permission, User
        from django.core.cache import cache
        from rest_framework.authtoken.models import Token

        live_server = request.getfixturevalue("live_server")
        user = User.objects.create_user("remote-app")
        user.user_permissions.add(Permission.objects.get(codename="view_version"))
        cache.clear()  # run throttle counters
        monkeypatch.setenv("CHATMODEL_BASE_URL", live_server.url)
        monkeypatch.setenv("CHATMODEL_API_KEY", Token.objects.create(user=user).key)
    return backend


def test_error_handling_loop(backend, capsys):
    session_uuid = None
    backend.script(FakeReply(fault="429"), FakeReply(content="Hello! What can I help you with?"))
    # --- seed ---
    max_retry = 3
    trial = 0
    session = ChatModel("example", session_uuid)
    while trial < max_retry:
    	session.add_messages([{"role": "user", "content": "..."}])
    	res = session.run()
    	if res.error:
    		print(res.error_log)
    		trial += 1
    		continue
    	break
    print(res.content)
    # --- end ---
    out = capsys.readouterr().out
    assert not res.error
    assert out.strip().endswith(res.content)
    assert res.content
    # The retried user message is stored once, answered once.
    roles = list(Message.objects.filter(session__uuid=session.session_uuid).values_list("role", flat=True))
    assert roles == ["user", "assistant"]
    if backend.name == "fake":
        assert trial == 1 and "rate limit" in out.lower()


def test_get_config(backend, capsys):
    # --- seed ---
    config: ChatModelConfig = ChatModel("say_hello_bot").get_config()
    print(config.system_prompt)
    # "You are a helpful assistant."
    print(config.version_detail)
    # {"model" : "gpt-3.5-turbo", "uuid": "version_uuid"}
    print(config.message_logs)
    # [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hello! What can I help you with?"}]
    # --- end ---
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "You are a helpful assistant."
    detail = eval(lines[1])  # noqa: S307 - it is the repr of a dict of str/int we just printed
    assert set(detail) >= {"model", "uuid"}
    assert detail["model"] == ("offline/demo" if backend.name == "offline" else "openai/fake-model")
    assert eval(lines[2]) == []  # noqa: S307 - a new session has no messages yet


def test_get_config_message_logs_shape(backend):
    session = ChatModel("say_hello_bot")
    session.add_messages([{"role": "user", "content": "Hello."}])
    backend.script(FakeReply(content="Hello! What can I help you with?"))
    session.run()
    logs = ChatModel("say_hello_bot", session.session_uuid).get_config().message_logs
    assert logs == [
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hello! What can I help you with?"},
    ]


def test_add_messages(backend):
    session_uuid = ChatModel("simple_assistant").session_uuid
    # --- seed ---
    session = ChatModel("simple_assistant", session_uuid)
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    # --- end ---
    stored = Message.objects.get(session__uuid=session_uuid)
    assert (stored.seq, stored.role, stored.content) == (1, "user", "Hello, I'm a user.")


def test_run(backend, capsys):
    backend.script(FakeReply(content="Hello, I'm a assistant."))
    # --- seed ---
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    res = session.run()
    print(res.content)
    # Hello, I'm a assistant.
    # --- end ---
    assert isinstance(res, LLMResponse) and not res.error
    assert capsys.readouterr().out == res.content + "\n"
    backend.check_transport(session)
    assert res.content and res.raw_output == res.content
    assistant = Message.objects.get(session__uuid=session.session_uuid, role="assistant")
    assert assistant.content == res.content and assistant.pk == res.message_id


def test_stream(backend, capsys):
    backend.script(FakeReply(content="Hello, I'm a assistant."))
    # --- seed ---
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    res = session.run(stream=True)
    for r in res:
    	print(r.content)
    # Hello,
    # I'm
    # a
    # assistant.
    # --- end ---
    lines = capsys.readouterr().out.splitlines()
    # One line a streamed piece, then the final chunk's empty content.
    assert len(lines) >= 3 and lines[-1] == ""
    stored = Message.objects.get(session__uuid=session.session_uuid, role="assistant").content
    assert "".join(lines) == stored
    backend.check_transport(session)
    if backend.name == "fake":
        assert lines[:-1] == ["Hello,", " I'm", " a", " assistant."]


def test_stream_chunks_are_typed(backend):
    backend.script(FakeReply(content="one two three"))
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    chunks = list(session.run(stream=True))
    assert all(isinstance(c, LLMStreamResponse) for c in chunks)
    final = chunks[-1]
    assert final.is_final and not final.error and final.usage["completion_tokens"] > 0
    assert final.api_response is not None and final.message_id is not None
    assert [c.is_final for c in chunks].count(True) == 1


def test_function_call(backend, capsys):
    backend.script(
        FakeReply(tool_calls=[{"name": "get_weather", "arguments": {"location": "Boston"}}]),
        FakeReply(content="It's 13 degrees celsius in Boston."),
    )
    # --- seed ---
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "What's the weather in Boston?"}])
    res = session.run(functions=[get_weather_function])
    print(res.function_call)
    # {"name": "get_weather", "args": {"location": "Boston"}}
    # --- end ---
    first = capsys.readouterr().out
    assert json.loads(first) == {"name": "get_weather", "args": {"location": "Boston"}}
    assert isinstance(res.function_call, FunctionCall)
    assert dict(res.function_call) == {"name": "get_weather", "args": {"location": "Boston"}}
    assert res.function_call.arguments == '{"location": "Boston"}' or json.loads(res.function_call.arguments) == {
        "location": "Boston"
    }
    # --- seed ---
    session.add_messages([{"role": "function", "content" : "13 degrees celsius"}])
    res = session.run()
    print(res.content)
    # It's 13 degrees celsius in Boston.
    # --- end ---
    assert capsys.readouterr().out == "It's 13 degrees celsius in Boston.\n"
    result = Message.objects.get(session__uuid=session.session_uuid, role="function")
    call = Message.objects.get(session__uuid=session.session_uuid, seq=2)
    assert result.name == "get_weather" and result.tool_call_id == call.tool_calls[0]["id"]
    if backend.name == "fake":
        sent = backend.fake_llm.last_request["body"]["messages"]
        assert sent[-2]["tool_calls"][0]["id"] == sent[-1]["tool_call_id"] == result.tool_call_id
        assert sent[-1]["role"] == "tool"


@pytest.mark.django_db(transaction=True)
async def test_asynchronous(backend, capsys):
    backend.script(FakeReply(content="Hello, I'm a assistant."))
    # --- seed ---
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    res = await session.arun()
    print(res.content)
    # Hello, I'm a assistant.
    # --- end ---
    assert not res.error, res.error_log
    assert capsys.readouterr().out == res.content + "\n"


@pytest.mark.django_db(transaction=True)
async def test_asynchronous_stream(backend):
    backend.script(FakeReply(content="Hello, I'm a assistant."))
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    pieces = [r.content async for r in session.arun(stream=True)]
    also_awaited = ChatModel("simple_assistant", session.session_uuid)
    also_awaited.add_messages([{"role": "user", "content": "again"}])
    backend.script(FakeReply(content="Again."))
    res = await also_awaited.arun(stream=True)
    second = [r async for r in res]
    assert pieces[-1] == "" and "".join(pieces)
    assert second[-1].is_final and not second[-1].error


def test_get_prompts(backend, capsys):
    # --- seed ---
    prompts = ChatModel("simple_assistant").get_prompts()
    print(prompts)
    # [{"role": "system", "content": "You are a helpful assistant."}]
    # --- end ---
    assert prompts == [{"role": "system", "content": "You are a helpful assistant."}]


def test_get_messages(backend):
    setup = ChatModel("simple_assistant")
    setup.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    backend.script(FakeReply(content="Hello, I'm a assistant."))
    setup.run()
    session_uuid = setup.session_uuid
    # --- seed ---
    chat_logs = ChatModel("simple_assistant", session_uuid).get_messages()
    print(chat_logs)
    # [
    #	{"role": "system", "content": "You are a helpful assistant."},
    #   {"role": "user", "content": "Hello, I'm a user."},
    #   {"role": "assistnat", "content": "Hello, I'm a assistant."}
    # ]
    # --- end ---
    assert [m["role"] for m in chat_logs] == ["system", "user", "assistant"]
    assert chat_logs[0] == {"role": "system", "content": "You are a helpful assistant."}


def test_deprecated_methods_warn(backend):
    session = ChatModel("simple_assistant")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session.get_prompts()
        session.get_messages()
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
