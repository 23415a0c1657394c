"""The HTTP transport's faults: each gives the documented result, and runs never raise."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from chatmodel_app import ChatModel
from chatmodel_app.exceptions import RemoteError, SessionBusy, SessionOfOtherChatModel
from chatmodel_app.models import Message
from chatmodel_app.testing import refused_url
from chatmodel_app.transports import http as http_transport

ROOT = Path(__file__).resolve().parent.parent
SESSION = "3f2c1a3e-0000-4000-8000-000000000001"


class Stub:
    """A scripted HTTP server standing in for a deployment: ``handle(handler)`` answers each request."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self.handle = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                stub.requests.append((self.command, self.path))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    stub.handle(self)

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def send(handler, status, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def session_exists(handler):
    """Answer the client's session look-up as an existing session; everything else via ``then``."""
    if handler.command == "GET" and handler.path.startswith(f"/api/sessions/{SESSION}/"):
        send(handler, 200, {"uuid": SESSION, "chat_model": "bot", "version": 1})
        return True
    return False


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def test_server_down():
    model = ChatModel("bot", base_url=refused_url().removesuffix("v1"), api_key="k")
    res = model.run()
    assert res.error and res.error_code == "connection_error" and "Could not connect" in res.error_log
    final = list(model.run(stream=True))[-1]
    assert final.is_final and final.error and final.error_code == "connection_error"
    with pytest.raises(RemoteError, match="Could not connect"):
        model.add_messages([{"role": "user", "content": "hi"}])
    with pytest.raises(RemoteError, match="Could not connect"):
        model.get_config()


async def test_server_down_async():
    model = ChatModel("bot", base_url=refused_url().removesuffix("v1"), api_key="k")
    res = await model.arun()
    assert res.error and res.error_code == "connection_error"
    chunks = [c async for c in model.arun(stream=True)]
    assert chunks[-1].error and chunks[-1].error_code == "connection_error"


def test_slow_server(stub, monkeypatch):
    monkeypatch.setenv("CHATMODEL_HTTP_TIMEOUT", "0.5")

    def slow(handler):
        if not session_exists(handler):
            time.sleep(2)
            send(handler, 200, {"content": "too late", "error": False})

    stub.handle = slow
    started = time.monotonic()
    res = ChatModel("bot", SESSION, base_url=stub.url, api_key="k").run()
    assert res.error and res.error_code == "timeout" and "did not answer in time" in res.error_log
    assert time.monotonic() - started < 1.8


def test_a_500_from_the_server(stub):
    def broken(handler):
        if not session_exists(handler):
            send(handler, 500, b"<h1>Server Error (500)</h1>", "text/html")

    stub.handle = broken
    model = ChatModel("bot", SESSION, base_url=stub.url, api_key="k")
    res = model.run()
    assert (
        res.error and res.error_code == "http_500" and "HTTP 500" in res.error_log and "Server Error" in res.error_log
    )
    final = list(model.run(stream=True))[-1]
    assert final.error and final.error_code == "http_500"
    with pytest.raises(RemoteError, match="HTTP 500"):
        model.add_messages([{"role": "user", "content": "hi"}])


async def test_a_500_from_the_server_async(stub):
    def broken(handler):
        if not session_exists(handler):
            send(handler, 500, b"<h1>Server Error (500)</h1>", "text/html")

    stub.handle = broken
    model = ChatModel("bot", SESSION, base_url=stub.url, api_key="k")
    res = await model.arun()
    assert res.error and res.error_code == "http_500" and "Server Error" in res.error_log
    final = [c async for c in model.arun(stream=True)][-1]
    assert final.is_final and final.error and final.error_code == "http_500"


def cut_stream(handler):
    """Start a streamed run, send two deltas, then go away mid-run."""
    if session_exists(handler):
        return
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Connection", "close")
    handler.end_headers()
    for seq, event in enumerate(
        [{"type": "run.started"}, {"type": "run.delta", "delta": "Hello"}, {"type": "run.delta", "delta": " wor"}],
        start=1,
    ):
        event.update(run_id="r1", seq=seq, session_uuid=SESSION)
        handler.wfile.write(f"id: r1:{seq}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        handler.wfile.flush()
    handler.close_connection = True  # the server goes away mid-run


def assert_cut(chunks):
    assert "".join(c.content for c in chunks[:-1]) == "Hello wor"
    final = chunks[-1]
    assert final.is_final and final.error and final.error_code == "stream_cut"
    assert "ended before the run finished" in final.error_log and "2 deltas" in final.error_log
    assert final.run_uuid == "r1"


def test_a_cut_event_stream(stub):
    stub.handle = cut_stream
    assert_cut(list(ChatModel("bot", SESSION, base_url=stub.url, api_key="k").run(stream=True)))


async def test_a_cut_event_stream_async(stub):
    stub.handle = cut_stream
    assert_cut([c async for c in ChatModel("bot", SESSION, base_url=stub.url, api_key="k").arun(stream=True)])


def test_a_session_of_another_chat_model_is_refused(stub):
    def other(handler):
        if handler.command == "GET" and handler.path.startswith(f"/api/sessions/{SESSION}/"):
            send(handler, 200, {"uuid": SESSION, "chat_model": "other_bot", "version": 1})
        else:
            send(handler, 500, b"unexpected", "text/plain")

    stub.handle = other
    model = ChatModel("bot", SESSION, base_url=stub.url, api_key="k")
    res = model.run()
    assert res.error and res.error_code == "session_not_found" and "another chat model ('other_bot')" in res.error_log
    with pytest.raises(SessionOfOtherChatModel):
        model.add_messages([{"role": "user", "content": "hi"}])
    assert {method for method, _path in stub.requests} == {"GET"}  # nothing was created or added


@pytest.fixture
def site(live_server, transactional_db, make_chat_model, django_user_model):
    """A live server of the example project's URLs with a chat model and a user's API token."""
    from django.core.cache import cache
    from rest_framework.authtoken.models import Token

    cache.clear()
    make_chat_model()
    user = django_user_model.objects.create_user("app")
    return live_server.url, Token.objects.create(user=user).key


def test_wrong_api_key(site):
    url, _key = site
    model = ChatModel("simple_assistant", base_url=url, api_key="not-a-token")
    res = model.run()
    assert res.error and res.error_code == "authentication_failed" and "HTTP 401" in res.error_log
    with pytest.raises(RemoteError, match="HTTP 401"):
        model.add_messages([{"role": "user", "content": "hi"}])


def test_upstream_failure_keeps_its_code(site, monkeypatch):
    url, key = site
    model = ChatModel("simple_assistant", base_url=url, api_key=key)
    model.add_messages([{"role": "user", "content": "hi"}])
    from chatmodel_app.models import Version

    Version.objects.update(model="openai/x", params={"api_base": refused_url()})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    res = model.run()
    assert res.error and res.error_code == "connection_error" and res.run_uuid  # the server's own LLMResponse


def test_busy_session_is_refused_with_session_busy(site):
    from chatmodel_app.models import Session

    url, key = site
    model = ChatModel("simple_assistant", base_url=url, api_key=key)
    model.add_messages([{"role": "user", "content": "hi"}])
    Session.objects.update(active_run_uuid="3f2c1a3e-0000-4000-8000-0000000000ff", lease_expires_at="2999-01-01T00:00Z")
    res = model.run()
    assert res.error and res.error_code == "session_busy"
    with pytest.raises(SessionBusy):
        model.add_messages([{"role": "user", "content": "again"}])


def test_async_runs_in_event_loops_one_after_another(site):
    """Each ``asyncio.run()`` talks over connections of its own loop, closed when that loop ends."""
    url, key = site
    model = ChatModel("simple_assistant", base_url=url, api_key=key)

    async def turn(n):
        model.add_messages([{"role": "user", "content": f"question {n}"}])
        res = await model.arun()
        model.add_messages([{"role": "user", "content": f"again {n}"}])
        chunks = [c async for c in model.arun(stream=True)]
        return res, chunks

    for n in range(4):
        res, chunks = asyncio.run(turn(n))
        assert not res.error and res.content and res.parsed_outputs is None, res.error_log
        final = chunks[-1]
        assert final.is_final and not final.error, final.error_log
        assert "".join(c.content for c in chunks) and final.parsed_outputs is None
        assert not list(http_transport._loop_clients)  # the finished loop's clients went with it
    roles = list(Message.objects.filter(session__uuid=model.session_uuid).values_list("role", flat=True))
    assert roles == ["user", "assistant"] * 8


class LoseFirstResponse(httpx.BaseTransport):
    """Delivers the first add_messages request, then drops its response, as a flaky network does."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/messages/") and not self.lost:
            response.read()
            self.lost += 1
            raise httpx.ReadError("connection reset while reading the response", request=request)
        return response


def test_add_messages_retried_after_a_lost_response_stores_once(site):
    url, key = site
    lossy = LoseFirstResponse()
    client = httpx.Client(base_url=url.rstrip("/") + "/", headers=http_transport._headers(key), transport=lossy)
    http_transport._clients[(url.rstrip("/") + "/", key)] = client
    try:
        model = ChatModel("simple_assistant", base_url=url, api_key=key)
        stored = model.add_messages([{"role": "user", "content": "exactly once"}])
    finally:
        http_transport._clients.pop((url.rstrip("/") + "/", key), None)
        client.close()
    assert lossy.lost == 1
    assert [m["content"] for m in stored] == ["exactly once"]
    assert list(Message.objects.values_list("content", flat=True)) == ["exactly once"]


def test_plain_script_without_django(stub):
    """The client works in a script with no Django project: only httpx and the app's plain modules."""

    def answer(handler):
        if handler.path.startswith("/api/sessions/") and handler.command == "GET":
            send(handler, 404, {"detail": "No session.", "code": "session_not_found"})
        elif handler.path.startswith("/api/chat-models/bot/sessions/"):
            send(handler, 201, {"uuid": SESSION, "chat_model": "bot", "version": 1})
        elif handler.path.endswith("/messages/"):
            send(handler, 201, {"messages": [{"role": "user", "content": "Hello"}]})
        else:
            send(handler, 200, {"content": "Hi from the server", "error": False, "session_uuid": SESSION})

    stub.handle = answer
    script = (
        "import sys\n"
        "from chatmodel_app import ChatModel\n"
        f"session = ChatModel('bot', base_url='{stub.url}', api_key='k')\n"
        "session.add_messages([{'role': 'user', 'content': 'Hello'}])\n"
        "print(session.run().content)\n"
        "assert 'django.conf' not in sys.modules or not __import__('django.conf').conf.settings.configured\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hi from the server"
