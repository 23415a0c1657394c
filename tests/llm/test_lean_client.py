"""The lean client and LiteLLM give the same replies, errors, retries and costs against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from typing import Any

import pytest

from chatmodel_app import llm
from chatmodel_app.testing import FakeReply, refused_url

PATHS = ["lean", "litellm"]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Seoul?"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
REPLIES = {
    "text": FakeReply(content="Sunny and 21 degrees in Seoul.", prompt_tokens=30, completion_tokens=7),
    "tools": FakeReply(
        tool_calls=[
            {"id": "call_a", "name": "get_weather", "arguments": {"city": "Seoul"}},
            {"id": "call_b", "name": "get_weather", "arguments": {"city": "Busan"}},
        ]
    ),
    "function_call": FakeReply(function_call={"name": "get_weather", "arguments": {"city": "Seoul"}}),
}


@pytest.fixture(params=PATHS)
def path(request, settings, monkeypatch):
    """Run the test on the lean client, then with it switched off (everything through LiteLLM)."""
    settings.CHATMODEL_LEAN_CLIENT = request.param == "lean"
    litellm = llm.get_litellm()
    calls: list[str] = []
    for name in ("completion", "acompletion"):
        real = getattr(litellm, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(litellm, name, spy)
    yield request.param
    # The path under test really made the call.
    assert bool(calls) == (request.param == "litellm"), calls


def make_request(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "openai/fake-model",
        "api_base": url,
        "messages": MESSAGES,
        "timeout": 5,
        "num_retries": 0,
        **extra,
    }


def call(request: dict[str, Any], *, stream: bool, is_async: bool) -> tuple[llm.Completion, list[Any]]:
    """One call as the pipeline makes it; returns the completion and the feed() results of a stream."""
    if not stream:
        return (asyncio.run(llm.acomplete(request)) if is_async else llm.complete(request)), []
    request = {**request, "stream_options": {"include_usage": True}}
    deltas: list[Any] = []
    if is_async:

        async def go() -> llm.Completion:
            assembler = llm.StreamAssembler(await llm.aopen_stream(request), request["model"])
            async for raw in assembler.stream:
                deltas.append(assembler.feed(raw))
            return assembler.finish()

        return asyncio.run(go()), deltas
    assembler = llm.StreamAssembler(llm.open_stream(request), request["model"])
    for raw in assembler.stream:
        deltas.append(assembler.feed(raw))
    return assembler.finish(), deltas


def observed(completion: llm.Completion) -> dict[str, Any]:
    fields = ("content", "tool_calls", "function_call", "finish_reason", "usage", "cost", "model", "complete")
    return {name: getattr(completion, name) for name in fields} | {"answered": completion.answered_model}


EXPECTED = {
    "text": {"content": "Sunny and 21 degrees in Seoul.", "finish_reason": "stop", "tool_calls": None},
    "tools": {
        "finish_reason": "tool_calls",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Seoul"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Busan"}'}},
        ],
    },
    "function_call": {
        "finish_reason": "function_call",
        "function_call": {"name": "get_weather", "arguments": '{"city": "Seoul"}'},
    },
}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", list(REPLIES))
def test_replies(fake_llm, fake_key, path, kind, stream, is_async):
    fake_llm.enqueue(REPLIES[kind])
    completion, deltas = call(make_request(fake_llm.url, tools=[WEATHER]), stream=stream, is_async=is_async)
    seen = observed(completion)
    for name, value in EXPECTED[kind].items():
        assert seen[name] == value, name
    assert seen["complete"] and seen["answered"] == "openai/fake-model"
    assert seen["usage"]["total_tokens"] == seen["usage"]["prompt_tokens"] + seen["usage"]["completion_tokens"] > 0
    if kind == "text":
        assert seen["usage"]["prompt_tokens"] == 30 and seen["usage"]["completion_tokens"] == 7
        assert "".join(text for text, _ in deltas) == ("Sunny and 21 degrees in Seoul." if stream else "")
    if kind == "tools" and stream:
        tool_deltas = [d for _, ds in deltas for d in ds]
        assert [(d["index"], d["id"], d["name"]) for d in tool_deltas if d["name"]] == [
            (0, "call_a", "get_weather"),
            (1, "call_b", "get_weather"),
        ]
        for index, city in ((0, "Seoul"), (1, "Busan")):
            assert "".join(d["arguments"] for d in tool_deltas if d["index"] == index) == f'{{"city": "{city}"}}'
    body = fake_llm.last_request["body"]
    assert body["model"] == "fake-model" and body["messages"] == MESSAGES and body["tools"] == [WEATHER]
    assert fake_llm.last_request["headers"]["authorization"].startswith("Bearer sk-fake")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_both_paths_agree_field_by_field(fake_llm, fake_key, settings, stream):
    """Same reply, same Completion (cost and model included), and the same request body on the wire."""
    results, bodies = [], []
    for lean in (True, False):
        settings.CHATMODEL_LEAN_CLIENT = lean
        fake_llm.enqueue(FakeReply(content="Hello there, friend.", prompt_tokens=11, completion_tokens=4))
        request = make_request(fake_llm.url, temperature=0.3, max_tokens=50, seed=7, tools=[WEATHER], user="u1")
        results.append(observed(call(request, stream=stream, is_async=False)[0]))
        bodies.append(fake_llm.last_request["body"])
    assert results[0] == results[1]
    assert bodies[0] == bodies[1]


@pytest.mark.django_db
def test_cost_comes_from_litellm_tables_on_both_paths(fake_llm, fake_key, settings):
    settings.CHATMODEL_MODEL_INFO = {
        "openai/fake-model": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
    }
    for lean in (True, False):
        settings.CHATMODEL_LEAN_CLIENT = lean
        for stream in (False, True):
            fake_llm.enqueue(FakeReply(content="hi", prompt_tokens=100, completion_tokens=10))
            completion = call(make_request(fake_llm.url), stream=stream, is_async=False)[0]
            assert completion.cost == pytest.approx(100 * 0.001 + 10 * 0.002), (lean, stream)


FAULTS = [
    ("401", "authentication"),
    ("429", "rate_limit"),
    ("500", "provider_error"),
    ("400_context", "context_window_exceeded"),
    ("malformed", "malformed_response"),
]


def failure(request: dict[str, Any], *, stream: bool, is_async: bool) -> llm.LLMError:
    try:
        completion, _ = call(request, stream=stream, is_async=is_async)
    except llm.LLMError as exc:
        return exc
    except Exception as exc:  # a stream breaking mid-way: the pipeline maps it
        return llm.map_exception(exc)
    assert not completion.complete, "the call should have failed"
    return llm.LLMError("stream_cut", "ended without a finish_reason")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("fault", "code"), FAULTS, ids=[f for f, _ in FAULTS])
def test_error_codes(fake_llm, fake_key, path, fault, code, stream, is_async):
    fake_llm.enqueue(FakeReply(content="one two three", fault=fault))
    error = failure(make_request(fake_llm.url), stream=stream, is_async=is_async)
    assert error.code == code, error.message
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("fault", ["cut", "eof"])
def test_cut_streams(fake_llm, fake_key, path, fault, is_async):
    """A 200 stream that dies mid-way, or ends without a finish_reason, is stream_cut; the text so far is kept."""
    fake_llm.enqueue(FakeReply(content="one two three four", fault=fault, cut_after=2))
    request = {**make_request(fake_llm.url), "stream_options": {"include_usage": True}}
    texts: list[str] = []

    async def consume_async() -> llm.StreamAssembler:
        assembler = llm.StreamAssembler(await llm.aopen_stream(request), request["model"])
        async for raw in assembler.stream:
            texts.append(assembler.feed(raw)[0])
        return assembler

    def consume() -> llm.StreamAssembler:
        assembler = llm.StreamAssembler(llm.open_stream(request), request["model"])
        for raw in assembler.stream:
            texts.append(assembler.feed(raw)[0])
        return assembler

    # Both end in an error (LiteLLM 1.110 fails a clean end without a finish_reason too), after the text so far.
    try:
        assembler = asyncio.run(consume_async()) if is_async else consume()
    except Exception as exc:
        error = llm.map_exception(exc)
        assert error.code == "stream_cut" and error.retryable, error.message
        if fault == "eof":
            assert "finish_reason" in error.message
    else:
        # Older LiteLLM (1.108) ends such a stream quietly: the assembler still knows it is unfinished, and the
        # pipeline stores the run as stream_cut from that (services/streaming.py).
        assert (fault, path) == ("eof", "litellm"), "a cut stream must not end quietly"
        assert not assembler.finish().complete
    assert "".join(texts) == "one two"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_timeout_and_refused_connection(fake_llm, fake_key, path, stream):
    fake_llm.enqueue(FakeReply(content="late", fault="slow", delay=1.0))
    error = failure(make_request(fake_llm.url, timeout=0.3), stream=stream, is_async=False)
    assert error.code == "timeout", error.message
    error = failure(make_request(refused_url()), stream=stream, is_async=True)
    assert error.code == "connection_error" and "connect" in error.message.lower(), error.message


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("fault", "attempts"),
    # LiteLLM with num_retries=N: the SDK retries retryable errors N times, then N more attempts for any error.
    [("500", 3), ("429", 3), ("401", 2), ("400_context", 2)],
)
def test_retries_match_litellm(fake_llm, fake_key, path, fault, attempts, stream):
    for _ in range(attempts + 2):
        fake_llm.enqueue(FakeReply(content="never", fault=fault))
    failure(make_request(fake_llm.url, num_retries=1), stream=stream, is_async=stream)
    assert len(fake_llm.requests) == attempts


def test_a_retry_that_succeeds_answers(fake_llm, fake_key, path):
    fake_llm.enqueue(FakeReply(fault="500"))
    fake_llm.enqueue(FakeReply(content="second time lucky"))
    completion, _ = call(make_request(fake_llm.url, num_retries=1), stream=True, is_async=False)
    assert completion.content == "second time lucky" and len(fake_llm.requests) == 2


def test_a_mid_stream_failure_is_not_retried(fake_llm, fake_key, path):
    fake_llm.enqueue(FakeReply(content="one two three", fault="cut", cut_after=1))
    error = failure(make_request(fake_llm.url, num_retries=2), stream=True, is_async=False)
    assert error.code == "stream_cut" and len(fake_llm.requests) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_missing_key_is_authentication(fake_llm, monkeypatch, path, stream):
    """Issue 16 item 6: no OPENAI_API_KEY gave provider_error, which callers retry."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    error = failure(make_request(fake_llm.url), stream=stream, is_async=False)
    assert error.code == "authentication" and not error.retryable, error.message
    assert "key" in error.message.lower()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("var", ["OPENAI_API_KEY", "CLOVASTUDIO_API_KEY"])
def test_a_refused_key_echoed_by_the_provider_is_scrubbed(fake_llm, monkeypatch, path, stream, var):
    """Issue 19 item 1: the provider's 401 repeats the key in its own words; the error text must not."""
    key = "zz-live-key-9f8e7d6c5b4a"  # not sk- shaped: only value-based scrubbing catches it
    monkeypatch.setenv(var, key)
    monkeypatch.setenv("CLOVASTUDIO_API_BASE", fake_llm.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "an-unrelated-anthropic-key-123")
    fake_llm.enqueue(FakeReply(fault="401_echo"))
    model = "openai/fake-model" if var == "OPENAI_API_KEY" else "clova/HCX-005"
    request = {**make_request(fake_llm.url), "model": model}
    if var != "OPENAI_API_KEY":
        request.pop("api_base")
    error = failure(request, stream=stream, is_async=stream)
    assert fake_llm.last_request["headers"]["authorization"] == f"Bearer {key}"  # the key was sent
    assert error.code == "authentication"
    assert "Incorrect API key provided: ***" in error.message
    assert key not in error.message and key[4:12] not in str(error.details)


def test_scrub_covers_every_credential_variable(monkeypatch):
    values = {
        "ANTHROPIC_API_KEY": "ant-0123456789abcdef",
        "AZURE_API_KEY": "azure0123456789abcdef",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEBYaDH",
        "HF_TOKEN": "hf_abcdefghijklmnop",
        "MY_DB_PASSWORD": "hunter2hunter2",
        "SOME_CLIENT_SECRET": "client-secret-value-1",
        "WATSONX_APIKEY": "watsonx-apikey-value",
        "VERTEXAI_CREDENTIALS": '{"private_key": "abc"}',
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LITELLM_LOG", "ERROR")  # a setting: never scrubbed
    text = " | ".join(f"{name} was {value}" for name, value in values.items()) + " | level ERROR"
    cleaned = llm.scrub(text)
    assert not [value for value in values.values() if value in cleaned]
    assert "level ERROR" in cleaned
    assert llm.scrub("header Bearer: tok-ABCDEFGH1234", ["tok-ABCDEFGH1234"]) == "header Bearer: ***"


def test_a_version_param_secret_is_scrubbed_from_errors(fake_llm, fake_key, settings):
    """Secrets in the request's own params (an Authorization header) never come back in error texts."""
    settings.CHATMODEL_LEAN_CLIENT = False  # extra_headers is LiteLLM's: the request stays on LiteLLM
    fake_llm.api_key = "the-right-key-000"
    fake_llm.enqueue(FakeReply(fault="401_echo"))
    secret = "Bearer per-version-token-77777"
    request = make_request(fake_llm.url, extra_headers={"Authorization": secret})
    error = failure(request, stream=False, is_async=False)
    assert "per-version-token-77777" not in error.message


def test_fallbacks_stay_on_litellm(fake_llm, fake_key, settings, monkeypatch):
    settings.CHATMODEL_LEAN_CLIENT = True
    from chatmodel_app.llm import lean

    monkeypatch.setattr(lean, "complete", lambda plan: pytest.fail("the Router must make fallback calls"))
    monkeypatch.setenv("CLOVASTUDIO_API_KEY", "clova-key-for-the-fallback")
    monkeypatch.setenv("CLOVASTUDIO_API_BASE", fake_llm.url)
    fake_llm.enqueue(FakeReply(fault="429"))
    fake_llm.enqueue(FakeReply(content="from the fallback"))
    completion = llm.complete(make_request(fake_llm.url, fallbacks=["clova/HCX-005"]))
    assert completion.content == "from the fallback" and completion.answered_model == "clova/HCX-005"


def test_routes_the_lean_client_leaves_to_litellm(fake_llm, fake_key):
    prepared = {"model": "openai/fake-model", "api_base": fake_llm.url, "messages": MESSAGES}
    assert llm.lean.plan(prepared) is not None
    assert llm.lean.plan({**prepared, "model": "gpt-4o-mini", "api_base": None}) is None  # no api_base
    assert llm.lean.plan({**prepared, "model": "anthropic/claude-3-5-haiku"}) is None
    assert llm.lean.plan({**prepared, "model": "openai/o3-mini"}) is None  # LiteLLM rewrites its params
    assert llm.lean.plan({**prepared, "extra_headers": {"X": "1"}}) is None  # a LiteLLM-only param


def test_async_clients_are_per_event_loop(fake_llm, fake_key, settings):
    settings.CHATMODEL_LEAN_CLIENT = True
    seen = []

    async def one() -> str:
        plan = llm.lean.plan(llm.calls.prepare(make_request(fake_llm.url)))
        seen.append(llm.lean.async_client(plan))
        return (await llm.acomplete(make_request(fake_llm.url))).content

    assert asyncio.run(one()).startswith("Echo:")
    assert asyncio.run(one()).startswith("Echo:")  # a client bound to the first, closed loop would fail here
    assert seen[0] is not seen[1]


def test_litellm_stream_wrappers_are_not_left_to_the_cyclic_collector(fake_llm, fake_key, settings):
    """Issue 19 item 11: wrappers freed inside gc run CustomStreamWrapper.__del__ there (a 3.11 crash)."""
    settings.CHATMODEL_LEAN_CLIENT = False
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    refs: list[weakref.ref] = []
    gc.collect()
    gc.disable()
    try:
        for is_async in (False, True):
            for fault in (None, "cut"):
                fake_llm.enqueue(FakeReply(content="one two three", fault=fault, cut_after=1))
                request = make_request(fake_llm.url)
                if is_async:

                    async def go(request: dict[str, Any] = request) -> None:
                        stream = await llm.aopen_stream(request)
                        refs.append(weakref.ref(stream.inner))
                        assembler = llm.StreamAssembler(stream, request["model"])
                        with contextlib.suppress(Exception):
                            async for raw in stream:
                                assembler.feed(raw)
                            assembler.finish()

                    asyncio.run(go())
                else:
                    stream = llm.open_stream(request)
                    refs.append(weakref.ref(stream.inner))
                    assembler = llm.StreamAssembler(stream, request["model"])
                    with contextlib.suppress(Exception):
                        for raw in stream:
                            assembler.feed(raw)
                        assembler.finish()
                    del stream, assembler
        assert all(isinstance(ref(), CustomStreamWrapper | type(None)) for ref in refs)
        import time

        time.sleep(0.3)  # LiteLLM's success logging runs on its executor for a moment after a stream ends
        left = [ref for ref in refs if ref() is not None]
        assert not left, f"{len(left)} of {len(refs)} wrappers were left for the cyclic collector"
    finally:
        gc.enable()


def test_litellm_stream_finalizer_is_disarmed():
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    llm.get_litellm()
    assert getattr(CustomStreamWrapper.__del__, "_chatmodel_disarmed", False)
