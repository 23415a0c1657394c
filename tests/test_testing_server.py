"""Tests for chatmodel_app.testing: the fake OpenAI-compatible server, exercised through litellm's real HTTP path."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")

import litellm  # noqa: E402
import pytest  # noqa: E402
from litellm.exceptions import MidStreamFallbackError  # noqa: E402 - not exported as litellm.MidStreamFallbackError

from chatmodel_app import testing as fake_llm_plugin  # noqa: E402
from chatmodel_app.testing import FakeLLMServer, FakeReply, refused_url, split_into_chunks  # noqa: E402

# Fixtures bound explicitly (not via pytest_plugins) so this module works whether or not a conftest registers the
# plugin; plain assignments also keep ruff's F811 quiet about fixture arguments shadowing imports.
fake_llm_server = fake_llm_plugin.fake_llm_server
fake_llm = fake_llm_plugin.fake_llm

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def complete(server: FakeLLMServer, **kwargs: Any) -> Any:
    """Call litellm against the fake server; no client retries so each call is exactly one request."""
    params: dict[str, Any] = {
        "model": "openai/fake-model",
        "api_base": server.url,
        "api_key": "sk-fake",
        "messages": MESSAGES,
        "timeout": 5,
        "num_retries": 0,
        "max_retries": 0,
    }
    params.update(kwargs)
    return litellm.completion(**params)


def stream_chunks(server: FakeLLMServer, **kwargs: Any) -> list[Any]:
    return list(complete(server, stream=True, **kwargs))


def joined_content(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- helpers of the module ------------------------------------------------------------------------


def test_split_into_chunks_keeps_spaces() -> None:
    assert split_into_chunks("Hello, I'm a") == ["Hello,", " I'm", " a"]
    for text in ["", "one", "  lead and trail  ", "multi\nline\ttext"]:
        assert "".join(split_into_chunks(text)) == text


def test_module_imports_only_stdlib_at_top_level() -> None:
    # fixtures.py imports pytest; the package imports it only when pytest is installed.
    package = Path(fake_llm_plugin.__file__).parent
    modules = [path for path in sorted(package.glob("*.py")) if path.name != "fixtures.py"]
    assert len(modules) > 1
    for path in modules:
        source = path.read_text(encoding="utf-8")
        top_level_imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        for line in top_level_imports:
            assert not any(name in line for name in ("django", "litellm", "pytest", "httpx", "openai")), (path, line)


# --- raw HTTP protocol ----------------------------------------------------------------------------


def _raw_post(server: FakeLLMServer, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_unknown_path_is_404_json(fake_llm: FakeLLMServer) -> None:
    status, _, data = _raw_post(fake_llm, "/v1/embeddings", {"input": "x"})
    assert status == 404
    assert "error" in json.loads(data)
    assert fake_llm.requests == []


def test_prefixed_path_and_keep_alive(fake_llm: FakeLLMServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake_llm.port, timeout=5)
    try:
        for path in ["/chat/completions", "/openai/deployments/x/chat/completions", "/v1/chat/completions"]:
            conn.request("POST", path, body=json.dumps({"model": "m", "messages": MESSAGES}))
            resp = conn.getresponse()
            payload = json.loads(resp.read())
            assert resp.status == 200
            assert payload["object"] == "chat.completion"
            assert payload["id"].startswith("chatcmpl-fake-")
            assert payload["choices"][0]["message"]["content"] == "Echo: What is the weather?"
    finally:
        conn.close()
    assert [r["path"] for r in fake_llm.requests][0] == "/chat/completions"


def test_raw_stream_is_chunked_sse(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(content="a b"))
    status, headers, data = _raw_post(
        fake_llm,
        "/v1/chat/completions",
        {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"
    events = [line[len("data: ") :] for line in data.decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [p["choices"][0]["delta"].get("content") for p in parsed[1:3]] == ["a", " b"]
    assert parsed[3]["choices"][0]["finish_reason"] == "stop"
    assert parsed[4]["choices"] == [] and parsed[4]["usage"]["completion_tokens"] == 2


# --- happy paths through litellm ------------------------------------------------------------------


def test_plain_reply_and_usage(fake_llm: FakeLLMServer) -> None:
    resp = complete(fake_llm)
    assert resp.choices[0].message.content == "Echo: What is the weather?"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == 5  # "Echo:", " What", " is", " the", " weather?"
    assert resp.usage.prompt_tokens == (len("Be brief.") + len("What is the weather?")) // 4 + 2
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens

    fake_llm.enqueue(FakeReply(content="Scripted.", prompt_tokens=11, completion_tokens=7, model="other-model"))
    resp = complete(fake_llm)
    assert resp.choices[0].message.content == "Scripted."
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (11, 7, 18)
    assert resp.model == "other-model"


def test_default_reply_variants(fake_llm: FakeLLMServer) -> None:
    resp = complete(fake_llm, messages=[{"role": "system", "content": "x"}])
    assert resp.choices[0].message.content == "Hello! What can I help you with?"
    parts = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "this"},
    ]
    resp = complete(fake_llm, messages=[{"role": "user", "content": parts}])
    assert resp.choices[0].message.content == "Echo: look at this"
    fake_llm.default_reply = lambda body: FakeReply(content=f"n={len(body['messages'])}")
    assert complete(fake_llm).choices[0].message.content == "n=2"


def test_queue_is_fifo_then_default(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(content="first"))
    fake_llm.enqueue(FakeReply(content="second"))
    assert [complete(fake_llm).choices[0].message.content for _ in range(3)] == [
        "first",
        "second",
        "Echo: What is the weather?",
    ]


def test_stream_joins_to_content_with_usage(fake_llm: FakeLLMServer) -> None:
    content = "Hello, I'm a fake   model.\nSecond line "
    fake_llm.enqueue(FakeReply(content=content))
    chunks = stream_chunks(fake_llm, stream_options={"include_usage": True})
    assert joined_content(chunks) == content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usages = [getattr(c, "usage", None) for c in chunks if getattr(c, "usage", None) is not None]
    assert usages, "usage chunk missing"
    assert usages[-1].completion_tokens == len(split_into_chunks(content))
    assert usages[-1].total_tokens == usages[-1].prompt_tokens + usages[-1].completion_tokens
    assert fake_llm.last_request["body"]["stream"] is True
    assert fake_llm.last_request["body"]["stream_options"] == {"include_usage": True}


def test_tool_calls_non_streaming(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(
        FakeReply(
            tool_calls=[
                {"name": "get_weather", "arguments": {"location": "Boston"}},
                {"name": "get_weather", "arguments": '{"location": "Paris"}', "id": "call_given"},
            ]
        )
    )
    resp = complete(fake_llm, tools=[WEATHER_TOOL])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert json.loads(calls[0].function.arguments) == {"location": "Boston"}
    assert calls[0].id.startswith("call_") and calls[1].id == "call_given"
    assert calls[1].function.arguments == '{"location": "Paris"}'
    assert fake_llm.last_request["body"]["tools"][0]["function"]["name"] == "get_weather"


def test_tool_calls_streaming_rebuilt_by_stream_chunk_builder(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(
        FakeReply(
            content="Let me check.",
            tool_calls=[{"name": "get_weather", "arguments": {"location": "Boston", "unit": "celsius"}}],
        )
    )
    chunks = stream_chunks(fake_llm, tools=[WEATHER_TOOL])
    arg_deltas = [
        tc.function.arguments
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
        for tc in c.choices[0].delta.tool_calls
        if tc.function.arguments
    ]
    assert len(arg_deltas) >= 2
    rebuilt = litellm.stream_chunk_builder(chunks, messages=MESSAGES)
    msg = rebuilt.choices[0].message
    assert rebuilt.choices[0].finish_reason == "tool_calls"
    assert msg.content == "Let me check."
    assert msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"location": "Boston", "unit": "celsius"}
    assert msg.tool_calls[0].id.startswith("call_")


def test_legacy_function_call_non_streaming(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(function_call={"name": "get_weather", "arguments": {"location": "Boston"}}))
    resp = complete(fake_llm, functions=[WEATHER_TOOL["function"]])
    choice = resp.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments) == {"location": "Boston"}


def test_requests_record_model_and_authorization(fake_llm: FakeLLMServer) -> None:
    complete(fake_llm, api_key="sk-recorded")
    assert len(fake_llm.requests) == 1
    req = fake_llm.last_request
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "fake-model"
    assert req["body"]["messages"] == MESSAGES
    assert req["headers"]["authorization"] == "Bearer sk-recorded"


def test_api_key_enforced(fake_llm: FakeLLMServer) -> None:
    fake_llm.api_key = "sk-right"
    fake_llm.enqueue(FakeReply(content="for the right key"))
    with pytest.raises(litellm.AuthenticationError):
        complete(fake_llm, api_key="sk-wrong")
    assert complete(fake_llm, api_key="sk-right").choices[0].message.content == "for the right key"
    assert [r["headers"]["authorization"] for r in fake_llm.requests] == ["Bearer sk-wrong", "Bearer sk-right"]
    fake_llm.reset()
    assert fake_llm.api_key is None
    assert complete(fake_llm, api_key="anything").choices[0].message.content.startswith("Echo:")


def test_token_delay_paces_stream(fake_llm: FakeLLMServer) -> None:
    fake_llm.token_delay = 0.05
    fake_llm.enqueue(FakeReply(content="one two three four five"))
    start = time.monotonic()
    chunks = stream_chunks(fake_llm)
    elapsed = time.monotonic() - start
    assert joined_content(chunks) == "one two three four five"
    assert elapsed >= 4 * 0.05
    fake_llm.reset()
    assert fake_llm.token_delay == 0.0


def test_twenty_concurrent_streams(fake_llm: FakeLLMServer) -> None:
    fake_llm.token_delay = 0.01
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            chunks = stream_chunks(fake_llm, messages=[{"role": "user", "content": f"request number {i} here"}])
            results[i] = joined_content(chunks)
        except BaseException as exc:  # collected so the main thread can report it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert not errors
    assert results == {i: f"Echo: request number {i} here" for i in range(20)}
    assert len(fake_llm.requests) == 20


def test_context_manager_and_refused_after_stop() -> None:
    with FakeLLMServer(api_key="sk-own") as server:
        url = server.url
        assert complete(server, api_key="sk-own").choices[0].message.content.startswith("Echo:")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    with pytest.raises(litellm.InternalServerError):
        complete(server)


# --- faults: what litellm 1.110.2 raises ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "exc_class"),
    [
        ("429", litellm.RateLimitError),
        ("500", litellm.InternalServerError),
        ("401", litellm.AuthenticationError),
        # litellm maps the "maximum context length" message to ContextWindowExceededError (a BadRequestError).
        ("400_context", litellm.ContextWindowExceededError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_http_error_faults(fake_llm: FakeLLMServer, fault: str, exc_class: type, stream: bool) -> None:
    fake_llm.enqueue(FakeReply(fault=fault))
    with pytest.raises(exc_class) as info:
        if stream:
            stream_chunks(fake_llm)
        else:
            complete(fake_llm)
    if fault == "400_context":
        assert isinstance(info.value, litellm.BadRequestError)
    assert len(fake_llm.requests) == 1  # no client-side retry


def test_slow_reply_times_out_without_server_noise(fake_llm: FakeLLMServer, capfd: pytest.CaptureFixture) -> None:
    fake_llm.enqueue(FakeReply(fault="slow", delay=3.0))
    start = time.monotonic()
    with pytest.raises(litellm.Timeout):
        complete(fake_llm, timeout=0.5)
    # The client gave up well before the server answered (with room for a loaded machine).
    assert time.monotonic() - start < 2.5
    # Let the server thread wake up and write to the closed socket.
    time.sleep(max(0.0, 3.2 - (time.monotonic() - start)))
    assert "Traceback" not in capfd.readouterr().err
    # The server is still healthy afterwards.
    assert complete(fake_llm).choices[0].message.content.startswith("Echo:")


def test_slow_stream_times_out(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(FakeReply(fault="slow", delay=0.8))
    with pytest.raises(litellm.Timeout):
        stream_chunks(fake_llm, timeout=0.5)


def test_cut_stream(fake_llm: FakeLLMServer) -> None:
    # Observed with litellm 1.110.2: the stream yields the chunks sent so far, then the missing terminating
    # HTTP chunk surfaces as httpx.RemoteProtocolError -> openai.APIConnectionError -> litellm.APIConnectionError,
    # which the stream wrapper re-raises as litellm.MidStreamFallbackError (a ServiceUnavailableError, status 503)
    # carrying the partial text in generated_content. The stream never ends with a finish_reason.
    fake_llm.enqueue(FakeReply(content="one two three four five", fault="cut", cut_after=2))
    received: list[Any] = []
    with pytest.raises(MidStreamFallbackError) as info:
        for chunk in complete(fake_llm, stream=True):
            received.append(chunk)
    exc = info.value
    assert isinstance(exc, litellm.ServiceUnavailableError)
    assert isinstance(exc.original_exception, litellm.APIConnectionError)
    assert exc.generated_content == "one two"
    assert exc.is_pre_first_chunk is False
    assert joined_content(received) == "one two"
    assert not any(c.choices and c.choices[0].finish_reason for c in received)


def test_cut_non_streaming(fake_llm: FakeLLMServer) -> None:
    # Observed: a truncated body (Content-Length not reached) -> httpx.RemoteProtocolError -> openai.APIConnectionError,
    # which litellm maps to litellm.InternalServerError ("Connection error.").
    fake_llm.enqueue(FakeReply(content="one two three", fault="cut"))
    with pytest.raises(litellm.InternalServerError):
        complete(fake_llm)


def test_malformed_stream(fake_llm: FakeLLMServer) -> None:
    # Observed: the JSONDecodeError of the bad SSE line is wrapped in litellm.MidStreamFallbackError.
    fake_llm.enqueue(FakeReply(content="one two three", fault="malformed"))
    received: list[Any] = []
    with pytest.raises(MidStreamFallbackError):
        for chunk in complete(fake_llm, stream=True):
            received.append(chunk)
    assert joined_content(received) == "one"


def test_malformed_non_streaming(fake_llm: FakeLLMServer) -> None:
    # Observed: a 200 whose body is not JSON -> litellm.InternalServerError.
    fake_llm.enqueue(FakeReply(content="x", fault="malformed"))
    with pytest.raises(litellm.InternalServerError):
        complete(fake_llm)


def test_connection_refused() -> None:
    # Observed: httpx.ConnectError -> openai.APIConnectionError -> litellm.InternalServerError (not APIConnectionError).
    with pytest.raises(litellm.InternalServerError) as info:
        litellm.completion(
            model="openai/fake-model",
            api_base=refused_url(),
            api_key="sk-fake",
            messages=MESSAGES,
            timeout=5,
            num_retries=0,
            max_retries=0,
        )
    assert not isinstance(info.value, litellm.APIConnectionError)
