"""Provider profiles (HyperCLOVA X, Ollama, OpenAI-compatible servers), model info, fallbacks, key hygiene."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from chatmodel_app import ChatModel
from chatmodel_app.llm import context_window, providers
from chatmodel_app.models import Message, Run, Session, Version
from chatmodel_app.testing import FakeReply

CLOVA_KEY = "nv-clova-secret-key-123456"
WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}


@pytest.fixture
def profiles_on_fake(fake_llm, monkeypatch, settings):
    """Point the built-in clova and ollama profiles at the fake server, with a CLOVA key in the environment."""
    monkeypatch.setenv("CLOVASTUDIO_API_KEY", CLOVA_KEY)
    monkeypatch.setenv("CLOVASTUDIO_API_BASE", fake_llm.url)
    monkeypatch.setenv("OLLAMA_API_BASE", fake_llm.url)
    return fake_llm


def test_resolve_builtin_profiles(monkeypatch):
    monkeypatch.setenv("CLOVASTUDIO_API_KEY", CLOVA_KEY)
    monkeypatch.delenv("CLOVASTUDIO_API_BASE", raising=False)
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    clova = providers.resolve("clova/HCX-005")
    assert (clova.route, clova.api_base, clova.api_key) == (
        "openai/HCX-005",
        "https://clovastudio.stream.ntruss.com/v1/openai",
        CLOVA_KEY,
    )
    ollama = providers.resolve("ollama/llama3.1")
    assert (ollama.route, ollama.api_base) == ("openai/llama3.1", "http://127.0.0.1:11434/v1")
    assert providers.resolve("gpt-4o-mini").call_kwargs() == {"model": "gpt-4o-mini"}


@override_settings(
    CHATMODEL_PROVIDERS={
        "mylab": {"route": "openai", "api_base": "http://10.0.0.5:8000/v1", "api_key_env": "MYLAB_KEY"},
        "ollama": None,
    }
)
def test_site_profiles_add_and_remove(monkeypatch):
    monkeypatch.setenv("MYLAB_KEY", "k-mylab-0000")
    target = providers.resolve("mylab/qwen2.5")
    assert target.call_kwargs() == {
        "model": "openai/qwen2.5",
        "api_base": "http://10.0.0.5:8000/v1",
        "api_key": "k-mylab-0000",
    }
    # Without its profile, ollama/ goes to LiteLLM's own ollama provider.
    assert providers.resolve("ollama/llama3.1").route == "ollama/llama3.1"


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_clova_version_against_the_fake_server(make_chat_model, profiles_on_fake, stream):
    make_chat_model(model="clova/HCX-005")
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "안녕하세요"}])
    profiles_on_fake.enqueue(FakeReply(content="안녕하세요! 무엇을 도와드릴까요?"))
    res = list(session.run(stream=True))[-1] if stream else session.run()
    assert not res.error, res.error_log
    assert Message.objects.get(pk=res.message_id).content == "안녕하세요! 무엇을 도와드릴까요?"
    request = profiles_on_fake.last_request
    assert request["body"]["model"] == "HCX-005"
    assert request["headers"]["authorization"] == f"Bearer {CLOVA_KEY}"
    assert Run.objects.get(uuid=res.run_uuid).model == "clova/HCX-005"


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_ollama_version_with_function_calls(make_chat_model, profiles_on_fake, stream):
    make_chat_model(model="ollama/llama3.1")
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Weather in Seoul?"}])
    profiles_on_fake.enqueue(FakeReply(tool_calls=[{"name": "get_weather", "arguments": {"location": "Seoul"}}]))
    res = list(session.run(functions=[WEATHER], stream=True))[-1] if stream else session.run(functions=[WEATHER])
    assert dict(res.function_call) == {"name": "get_weather", "args": {"location": "Seoul"}}
    request = profiles_on_fake.last_request
    assert request["body"]["model"] == "llama3.1"
    assert request["body"]["tools"][0]["function"]["name"] == "get_weather"
    assert request["headers"]["authorization"] == "Bearer not-needed"  # Ollama takes any key


@override_settings(
    CHATMODEL_MODEL_INFO={
        "clova/HCX-005": {
            "max_input_tokens": 2000,
            "max_output_tokens": 500,
            "input_cost_per_token": 0.001,
            "output_cost_per_token": 0.002,
            "supports_function_calling": True,
        }
    }
)
def test_model_info_is_registered_with_litellm(make_chat_model, profiles_on_fake):
    assert context_window("clova/HCX-005", 8192) == 2000
    make_chat_model(model="clova/HCX-005")
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hello"}])
    profiles_on_fake.enqueue(FakeReply(content="hi", prompt_tokens=100, completion_tokens=10))
    res = session.run()
    assert res.cost == pytest.approx(100 * 0.001 + 10 * 0.002)
    # The budget follows the registered window: a long message no longer fits.
    session.add_messages([{"role": "user", "content": "word " * 3000}])
    assert session.run().error_code == "context_window_exceeded"


@pytest.mark.parametrize("fault", ["429", "500"])
def test_fallback_answers_when_the_primary_fails(make_chat_model, fake_llm, fake_key, profiles_on_fake, fault):
    make_chat_model(model="openai/primary-model", params={"api_base": fake_llm.url}, fallbacks=["clova/HCX-005"])
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hello"}])
    fake_llm.enqueue(FakeReply(fault=fault))
    fake_llm.enqueue(FakeReply(content="from the fallback"))
    res = session.run()
    assert not res.error, res.error_log
    assert res.content == "from the fallback" and res.model == "clova/HCX-005"
    run = Run.objects.get(uuid=res.run_uuid)
    assert run.model == "clova/HCX-005" and run.status == Run.Status.COMPLETED
    assert [a["code"] for a in run.attempts] == [fault]
    assert [r["body"]["model"] for r in fake_llm.requests] == ["primary-model", "HCX-005"]


def test_fallback_chain_records_each_failed_attempt_in_order(make_chat_model, fake_llm, fake_key, profiles_on_fake):
    make_chat_model(
        model="openai/primary-model", params={"api_base": fake_llm.url}, fallbacks=["ollama/llama3.1", "clova/HCX-005"]
    )
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hello"}])
    for reply in (FakeReply(fault="429"), FakeReply(fault="500"), FakeReply(content="third time")):
        fake_llm.enqueue(reply)
    final = list(session.run(stream=True))[-1]
    assert not final.error, final.error_log
    run = Run.objects.get(uuid=final.run_uuid)
    assert run.model == "clova/HCX-005"
    assert [a["code"] for a in run.attempts] == ["429", "500"]


def test_all_fallbacks_failing_is_one_error(make_chat_model, fake_llm, fake_key, profiles_on_fake):
    make_chat_model(model="openai/primary-model", params={"api_base": fake_llm.url}, fallbacks=["clova/HCX-005"])
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hello"}])
    fake_llm.enqueue(FakeReply(fault="429"))
    fake_llm.enqueue(FakeReply(fault="500"))
    res = session.run()
    assert res.error and res.error_code in ("rate_limit", "provider_error")
    assert list(Message.objects.values_list("role", flat=True)) == ["user"]


def test_the_key_never_leaves_the_server(make_chat_model, profiles_on_fake, caplog):
    """Grep every stored field, response body and log line of runs (good and failed) for the key."""
    caplog.set_level(logging.DEBUG)
    make_chat_model(model="clova/HCX-005")
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hello"}])
    responses = []
    profiles_on_fake.enqueue(FakeReply(content="fine"))
    responses.append(session.run())
    for fault in ("401", "500", "429"):
        profiles_on_fake.enqueue(FakeReply(fault=fault))
        responses.append(session.run())
    profiles_on_fake.enqueue(FakeReply(content="one two three", fault="cut", cut_after=1))
    responses.extend(session.run(stream=True))
    assert profiles_on_fake.last_request["headers"]["authorization"] == f"Bearer {CLOVA_KEY}"  # it was used
    stored = json.dumps(
        [
            list(m.values())
            for m in (
                Run.objects.values(),
                Message.objects.values(),
                Session.objects.values(),
                Version.objects.values(),
            )
        ],
        default=str,
    )
    bodies = json.dumps([r.to_dict() for r in responses], default=str)
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for where, text in (("database", stored), ("responses", bodies), ("logs", logs)):
        assert CLOVA_KEY not in text, where
    assert any(r.error for r in responses)


def test_check_warns_about_a_missing_key(make_chat_model, monkeypatch):
    monkeypatch.delenv("CLOVASTUDIO_API_KEY", raising=False)
    make_chat_model(model="clova/HCX-005")
    warnings = [m for m in run_checks() if m.id == "chatmodel_app.W002"]
    assert len(warnings) == 1 and "CLOVASTUDIO_API_KEY" in warnings[0].msg
    monkeypatch.setenv("CLOVASTUDIO_API_KEY", CLOVA_KEY)
    assert not [m for m in run_checks() if m.id == "chatmodel_app.W002"]


def test_scrub_removes_configured_keys(monkeypatch):
    from chatmodel_app.llm import scrub

    monkeypatch.setenv("CLOVASTUDIO_API_KEY", CLOVA_KEY)
    assert CLOVA_KEY not in scrub(f"bad key {CLOVA_KEY} given")
    assert "sk-abcd***" in scrub("Incorrect API key provided: sk-abcdefghijklmnop")


def test_admin_shows_a_missing_key_beside_the_version(make_chat_model, admin_client, monkeypatch):
    monkeypatch.delenv("CLOVASTUDIO_API_KEY", raising=False)
    make_chat_model(model="clova/HCX-005")
    version = Version.objects.get()
    listing = admin_client.get("/admin/chatmodel_app/version/").content.decode()
    assert "CLOVASTUDIO_API_KEY not set" in listing
    page = admin_client.get(f"/admin/chatmodel_app/version/{version.pk}/change/").content.decode()
    assert "CLOVASTUDIO_API_KEY" in page and "is not set on the server" in page
    monkeypatch.setenv("CLOVASTUDIO_API_KEY", CLOVA_KEY)
    assert CLOVA_KEY not in admin_client.get(f"/admin/chatmodel_app/version/{version.pk}/change/").content.decode()
    assert "not set" not in admin_client.get("/admin/chatmodel_app/version/").content.decode()


@pytest.mark.django_db
def test_an_unreachable_local_server_says_which_url_and_which_variable(make_chat_model, monkeypatch):
    from chatmodel_app import ChatModel
    from chatmodel_app.testing import refused_url

    url = refused_url()
    monkeypatch.setenv("OLLAMA_API_BASE", url)
    make_chat_model(model="ollama/llama3.2")
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hi"}])
    res = session.run()
    assert res.error_code == "connection_error"
    assert url in res.error_log and "OLLAMA_API_BASE" in res.error_log
