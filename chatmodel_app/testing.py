"""Fake OpenAI-compatible chat-completions server on loopback, for tests and benchmarks.

The server speaks real HTTP so that litellm/openai/httpx are exercised end to end, and can be
scripted to reply with text, tool calls, or faults (rate limits, server errors, timeouts, cut or
malformed streams). Only the standard library is imported at module import time; the pytest
fixtures ``fake_llm_server`` and ``fake_llm`` are defined only when pytest is importable, so host
projects can use ``pytest_plugins = ["chatmodel_app.testing"]``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeLLMServer",
    "FakeReply",
    "echo_reply",
    "refused_url",
    "split_into_chunks",
]

# "eof": a stream that ends cleanly ([DONE], closed chunked body) after cut_after chunks but never sent a
# finish_reason, as some servers do when they stop generating mid-answer.
# "401_echo": a 401 whose message repeats the key the client sent, as OpenAI's "Incorrect API key provided: <key>".
FAULTS = frozenset({"429", "500", "401", "401_echo", "400_context", "slow", "cut", "eof", "malformed"})

# Errors raised when the client hung up (timeouts, cut tests); they are expected and must stay silent.
_DISCONNECT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)

_ERROR_BODIES: dict[str, tuple[int, dict[str, Any]]] = {
    "429": (
        429,
        {"error": {"message": "Rate limit reached (fake)", "type": "rate_limit_error", "code": "rate_limit_exceeded"}},
    ),
    "500": (
        500,
        {"error": {"message": "Internal server error (fake)", "type": "server_error", "code": "server_error"}},
    ),
    "401": (
        401,
        {
            "error": {
                "message": "Incorrect API key provided (fake)",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
    ),
    "400_context": (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 8192 tokens. "
                "However, your messages resulted in 9000 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
}


@dataclass
class FakeReply:
    """One scripted answer of the fake server: text, tool calls, legacy function call and/or a fault."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    fault: str | None = None
    delay: float = 0.0
    cut_after: int = 2
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {sorted(FAULTS)}")


def split_into_chunks(text: str) -> list[str]:
    """Split text into word chunks that keep their leading whitespace, so ``"".join`` restores it."""
    # Trailing whitespace becomes its own chunk so that the round trip is exact.
    return re.findall(r"\s*\S+|\s+", text)


def _message_text(content: Any) -> str:
    """Return the text of a message content that is a string or a list of OpenAI content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return " ".join(texts)
    return str(content)


def echo_reply(body: dict[str, Any]) -> FakeReply:
    """Default reply: echo the last user message, or greet when the request has no user message."""
    messages = body.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return FakeReply(content=f"Echo: {_message_text(message.get('content'))}")
    return FakeReply(content="Hello! What can I help you with?")


def refused_url() -> str:
    """Return a ``http://127.0.0.1:PORT/v1`` URL for a port nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _estimate_prompt_tokens(body: dict[str, Any]) -> int:
    messages = [m for m in (body.get("messages") or []) if isinstance(m, dict)]
    chars = sum(len(_message_text(m.get("content"))) for m in messages)
    return chars // 4 + len(messages)


def _split_arguments(arguments: str) -> list[str]:
    """Split a JSON arguments string into at least two pieces, as OpenAI streams them."""
    if len(arguments) < 2:
        return [arguments, ""]
    step = max(1, len(arguments) // 3)
    pieces = [arguments[i : i + step] for i in range(0, len(arguments), step)]
    return pieces


def _arguments_string(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments)


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], owner: FakeLLMServer) -> None:
        self.owner = owner
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client disconnects are part of the fault scenarios; anything else is a real bug worth printing.
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECT_ERRORS) or (isinstance(exc, OSError) and self.owner._stopping):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: with Nagle's algorithm a kept-alive connection's small writes wait ~40 ms for the client's
    # delayed ACK, which skews every latency measured against this server.
    disable_nagle_algorithm = True
    server: _FakeHTTPServer
    server_version = "FakeLLM/1.0"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(*_DISCONNECT_ERRORS):
            super().finish()

    def handle(self) -> None:
        # Clients hanging up (timeouts, cut tests) and stop() shutting kept-alive sockets are expected here.
        try:
            super().handle()
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing -------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        # Chunk framing written by hand so the stream keeps HTTP/1.1 keep-alive semantics and a cut
        # stream is detectable by the client (missing terminating zero-length chunk).
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _write_event(self, payload: Any) -> None:
        self._write_chunk(f"data: {json.dumps(payload)}\n\n".encode())

    def _abort(self) -> None:
        """Close the connection abruptly, mid-response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers end at an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # --- routing --------------------------------------------------------------------------------

    def _not_found(self) -> None:
        if self.command in ("POST", "PUT", "PATCH"):
            self._read_body()  # drain it so the kept-alive connection stays in sync
        self._send_json(
            404,
            {"error": {"message": f"Unknown path {self.path} (fake)", "type": "invalid_request_error", "code": None}},
        )

    def do_GET(self) -> None:
        self._not_found()

    def do_PUT(self) -> None:
        self._not_found()

    def do_DELETE(self) -> None:
        self._not_found()

    def do_PATCH(self) -> None:
        self._not_found()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.endswith("/chat/completions"):
            self._not_found()
            return
        raw = self._read_body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(
                400, {"error": {"message": "Request body is not valid JSON (fake)", "type": "invalid_request_error"}}
            )
            return
        if not isinstance(body, dict):
            body = {}
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner = self.server.owner
        number = owner._record({"path": self.path, "headers": headers, "body": body})
        api_key = owner.api_key
        if api_key is not None and headers.get("authorization") != f"Bearer {api_key}":
            # Rejected before a scripted reply is consumed, so the script still applies to the next good request.
            status, payload = _ERROR_BODIES["401"]
            self._send_json(status, payload)
            return
        self._answer(owner, body, owner._next_reply(body), number, headers.get("authorization"))

    def _answer(
        self, owner: FakeLLMServer, body: dict[str, Any], reply: FakeReply, number: int, auth: str | None = None
    ) -> None:
        if reply.delay > 0:
            time.sleep(reply.delay)
        if reply.fault in _ERROR_BODIES:
            status, payload = _ERROR_BODIES[reply.fault]
            self._send_json(status, payload)
            return
        if reply.fault == "401_echo":
            sent = (auth or "").removeprefix("Bearer ")
            message = f"Incorrect API key provided: {sent}. You can find your API key in your account settings."
            self._send_json(
                401, {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
            )
            return
        if body.get("stream"):
            self._answer_stream(owner, body, reply, number)
        else:
            self._answer_plain(owner, body, reply, number)

    # --- non-streaming --------------------------------------------------------------------------

    def _answer_plain(self, owner: FakeLLMServer, body: dict[str, Any], reply: FakeReply, number: int) -> None:
        if reply.fault == "malformed":
            data = b'{"id": "chatcmpl-fake", "choices": [ this is not json'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return

        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        finish_reason = "stop"
        tool_calls = owner._tool_calls_for(reply)
        if tool_calls:
            message["tool_calls"] = [
                {"id": tc["id"], "type": "function", "function": {"name": tc["name"], "arguments": tc["arguments"]}}
                for tc in tool_calls
            ]
            finish_reason = "tool_calls"
        elif reply.function_call is not None:
            message["function_call"] = {
                "name": reply.function_call.get("name", ""),
                "arguments": _arguments_string(reply.function_call.get("arguments")),
            }
            finish_reason = "function_call"
        elif message["content"] is None:
            message["content"] = ""

        chunks = split_into_chunks(reply.content or "")
        payload = {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "fake-model",
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": _usage(body, reply, len(chunks) + _tool_tokens(tool_calls, reply)),
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if reply.fault == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._abort()
            return
        self.wfile.write(data)
        self.wfile.flush()

    # --- streaming ------------------------------------------------------------------------------

    def _answer_stream(self, owner: FakeLLMServer, body: dict[str, Any], reply: FakeReply, number: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        base = {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model or body.get("model") or "fake-model",
            "system_fingerprint": "fp_fake",
        }

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            self._write_event(
                {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            )

        event({"role": "assistant", "content": ""})
        chunks = split_into_chunks(reply.content or "")
        delay = owner.token_delay
        sent = 0
        for piece in chunks:
            if reply.fault in ("cut", "eof") and sent >= reply.cut_after:
                break
            if sent and delay > 0:
                time.sleep(delay)
            event({"content": piece})
            sent += 1
            if reply.fault == "malformed":
                break

        if reply.fault == "malformed":
            if not chunks:
                event({"content": "partial"})
            self._write_chunk(b"data: {not json\n\n")
            self._abort()
            return
        if reply.fault == "cut":
            self._abort()
            return
        if reply.fault == "eof":
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
            return

        finish_reason = "stop"
        tool_calls = owner._tool_calls_for(reply)
        if tool_calls:
            for index, tc in enumerate(tool_calls):
                if delay > 0:
                    time.sleep(delay)
                event(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": tc["id"],
                                "type": "function",
                                "function": {"name": tc["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                for piece in _split_arguments(tc["arguments"]):
                    event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            finish_reason = "tool_calls"
        elif reply.function_call is not None:
            event({"function_call": {"name": reply.function_call.get("name", ""), "arguments": ""}})
            for piece in _split_arguments(_arguments_string(reply.function_call.get("arguments"))):
                event({"function_call": {"arguments": piece}})
            finish_reason = "function_call"

        event({}, finish_reason)
        stream_options = body.get("stream_options") or {}
        if isinstance(stream_options, dict) and stream_options.get("include_usage"):
            self._write_event(
                {**base, "choices": [], "usage": _usage(body, reply, sent + _tool_tokens(tool_calls, reply))}
            )
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # terminating zero-length chunk


def _tool_tokens(tool_calls: list[dict[str, Any]], reply: FakeReply) -> int:
    args = [tc["arguments"] for tc in tool_calls]
    if reply.function_call is not None and not tool_calls:
        args.append(_arguments_string(reply.function_call.get("arguments")))
    return sum(len(a) // 4 + 1 for a in args)


def _usage(body: dict[str, Any], reply: FakeReply, default_completion: int) -> dict[str, int]:
    prompt = reply.prompt_tokens if reply.prompt_tokens is not None else _estimate_prompt_tokens(body)
    completion = reply.completion_tokens if reply.completion_tokens is not None else default_completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class FakeLLMServer:
    """OpenAI-compatible chat-completions server on loopback, scripted with :class:`FakeReply` objects."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, token_delay: float = 0.0, api_key: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.token_delay = token_delay
        self.api_key = api_key
        self.default_reply: Callable[[dict[str, Any]], FakeReply] = echo_reply
        self._initial_token_delay = token_delay
        self._initial_api_key = api_key
        self._lock = threading.Lock()
        self._queue: collections.deque[FakeReply] = collections.deque()
        self._requests: list[dict[str, Any]] = []
        self._request_numbers = itertools.count(1)
        self._call_numbers = itertools.count(1)
        self._httpd: _FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind the socket and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping = False
        self._httpd = _FakeHTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeLLMServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket and any kept-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping = True
        httpd.shutdown()
        httpd.server_close()
        # Kept-alive connections would otherwise keep being served by their handler threads.
        with httpd.connections_lock:
            connections = list(httpd.open_connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to pass as litellm ``api_base``: ``http://HOST:PORT/v1``."""
        if self._httpd is None and self.port == 0:
            raise RuntimeError("FakeLLMServer is not started")
        return f"http://{self.host}:{self.port}/v1"

    # --- scripting and inspection ---------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of every chat-completions request received, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> dict[str, Any] | None:
        """The most recent chat-completions request, or None."""
        with self._lock:
            return self._requests[-1] if self._requests else None

    def enqueue(self, reply: FakeReply) -> None:
        """Script the reply to a future request (FIFO); the default reply is used once the queue is empty."""
        with self._lock:
            self._queue.append(reply)

    def reset(self) -> None:
        """Forget scripted replies and recorded requests; restore token_delay, api_key and default_reply."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self.token_delay = self._initial_token_delay
            self.api_key = self._initial_api_key
            self.default_reply = echo_reply

    # --- used by the request handler ------------------------------------------------------------

    def _record(self, request: dict[str, Any]) -> int:
        with self._lock:
            self._requests.append(request)
            return next(self._request_numbers)

    def _next_reply(self, body: dict[str, Any]) -> FakeReply:
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
            default_reply = self.default_reply
        # The default reply runs outside the lock: it is user code and may be slow.
        return reply if reply is not None else default_reply(body)

    def _tool_calls_for(self, reply: FakeReply) -> list[dict[str, str]]:
        calls = []
        for tc in reply.tool_calls or []:
            call_id = tc.get("id")
            if not call_id:
                with self._lock:
                    call_id = f"call_{next(self._call_numbers)}"
            arguments = _arguments_string(tc.get("arguments"))
            calls.append({"id": call_id, "name": tc.get("name", ""), "arguments": arguments})
        return calls


try:  # Fixtures only when pytest is available, so the module stays importable in production code.
    import pytest as _pytest_module
except ImportError:  # pragma: no cover - exercised only without pytest installed
    _pytest_module = None  # type: ignore[assignment]

if _pytest_module is not None:

    @_pytest_module.fixture(scope="session")
    def fake_llm_server() -> Iterator[FakeLLMServer]:
        """One fake LLM server started for the whole test session."""
        server = FakeLLMServer().start()
        try:
            yield server
        finally:
            server.stop()

    @_pytest_module.fixture
    def fake_llm(fake_llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
        """The session fake LLM server, reset before and after the test."""
        fake_llm_server.reset()
        try:
            yield fake_llm_server
        finally:
            fake_llm_server.reset()
