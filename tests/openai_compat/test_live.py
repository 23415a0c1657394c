"""The real ``openai`` package against a real daphne worker of the example project (ASGI, /v1/).

The worker runs the demo chat models on the offline model, which calls a function when the user's message
names it; the test process reads the worker's database as the admin would show it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import openai
import pytest

from ..live import ROOT, live_site

# A second user, bob, with a token of his own.
BOB = """
import django
django.setup()
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
user, _ = get_user_model().objects.get_or_create(username="bob")
print(Token.objects.get_or_create(user=user)[0].key)
"""

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    env = {"CHATMODEL_OFFLINE_TOKEN_DELAY": "0.05"}  # words arrive over time, so buffering would show
    with live_site(tmp_path_factory.mktemp("openai-live"), redis_db=11, env=env) as site:
        worker, site.uvicorn = site.start("daphne", "uvicorn")
        made = subprocess.run(
            [sys.executable, "-c", BOB], cwd=ROOT, env=site.env, capture_output=True, text=True, timeout=60, check=True
        )
        site.bob_token = made.stdout.strip().splitlines()[-1]
        site.worker = worker
        yield site


def _client(site, token: str, worker=None) -> openai.OpenAI:
    worker = worker or site.worker
    return openai.OpenAI(base_url=f"{worker.http}/v1", api_key=token, max_retries=0, timeout=30)


def _session_rows(site, conversation_id: str) -> list[tuple]:
    session_uuid = conversation_id[len("conv_") :]
    return site.query(
        "SELECT m.role, m.content FROM chatmodel_app_message m JOIN chatmodel_app_session s ON s.id = m.session_id "
        "WHERE replace(CAST(s.uuid AS TEXT), '-', '') = %s ORDER BY m.seq",
        (session_uuid,),
    )


def test_streamed_response_arrives_as_it_is_written_and_is_stored(site):
    client = _client(site, site.token)
    text = " ".join(f"word{i}" for i in range(20))  # 20 words, 0.05 s apart: about a second of writing
    arrivals = []
    final = None
    started = time.monotonic()
    for event in client.responses.create(model="simple_assistant", input=text, stream=True):
        if event.type == "response.output_text.delta":
            arrivals.append(time.monotonic() - started)
        final = event
    assert final.type == "response.completed"
    assert final.response.output_text == f"You said: {text}"
    # Not buffered: the words came over the run's time, not all at once at its end.
    assert arrivals[-1] - arrivals[0] > 0.3
    assert _session_rows(site, final.response.conversation.id) == [
        ("user", text),
        ("assistant", f"You said: {text}"),
    ]
    run_uuid = final.response.id[len("resp_") :]
    assert site.query(
        "SELECT status, stream FROM chatmodel_app_run WHERE replace(CAST(uuid AS TEXT), '-', '') = %s", (run_uuid,)
    ) == [("completed", 1)]


def test_conversation_with_a_function_call_round_trip(site):
    client = _client(site, site.token)
    conversation = client.conversations.create(metadata={"model": "simple_assistant"})
    asked = client.responses.create(
        model="simple_assistant",
        conversation=conversation.id,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],
    )
    (call,) = asked.output
    assert (call.type, call.name, call.arguments) == ("function_call", "get_weather", '{"location": "Paris"}')
    answered = client.responses.create(
        model="simple_assistant",
        conversation=conversation.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    final = list(answered)[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "It's 22 degrees in Paris."
    assert final.response.previous_response_id == asked.id
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [i.type for i in items] == ["message", "function_call", "function_call_output", "message"]
    assert [r[0] for r in _session_rows(site, conversation.id)] == ["user", "assistant", "tool", "assistant"]


def test_chat_completions_and_models(site):
    client = _client(site, site.token)
    assert {m.id for m in client.models.list()} == {"simple_assistant", "say_hello_bot"}
    chunks = list(
        client.chat.completions.create(
            model="say_hello_bot", messages=[{"role": "user", "content": "Hello"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello! What can I help you with?"
    completion = client.chat.completions.create(model="say_hello_bot", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content == "Hello! What can I help you with?"
    rows = site.query(
        "SELECT COUNT(*) FROM chatmodel_app_session s JOIN chatmodel_app_chatmodel c ON c.id = s.chat_model_id "
        "WHERE c.name = 'say_hello_bot'"
    )
    assert rows == [(2,)]


def test_another_users_conversation_is_not_found(site):
    alice, bob = _client(site, site.token), _client(site, site.bob_token)
    response = alice.responses.create(model="simple_assistant", input="Mine")
    with pytest.raises(openai.NotFoundError):
        bob.conversations.retrieve(response.conversation.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="simple_assistant", input="Let me in", previous_response_id=response.id)
    with pytest.raises(openai.AuthenticationError):
        _client(site, "wrong").responses.create(model="simple_assistant", input="Hi")


async def test_the_async_client_on_uvicorn_and_the_response_on_daphne(site):
    client = openai.AsyncOpenAI(base_url=f"{site.uvicorn.http}/v1", api_key=site.token, max_retries=0, timeout=30)
    async with client:
        stream = await client.responses.create(model="simple_assistant", input="async words here", stream=True)
        events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "You said: async words here"
    # Stored in the one database: any worker answers for it.
    stored = _client(site, site.token).responses.retrieve(events[-1].response.id)
    assert stored.output_text == "You said: async words here"
