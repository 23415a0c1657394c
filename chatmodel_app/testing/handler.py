"""The fake server's HTTP side: a threading server that tracks its connections, and the chat-completions handler.

The handler writes plain JSON and chunked server-sent events by hand, so faults (cut or malformed
streams, a stream that ends without a finish_reason) look on the wire as they do from real providers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .replies import FakeReply, arguments_string, reply_usage, split_arguments, split_into_chunks, tool_tokens

if TYPE_CHECKING:
    from .server import FakeLLMServer

# Errors raised when the client hung up (timeouts, cut tests); they are expected and must stay silent.
DISCONNECT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)

ERROR_BODIES: dict[str, tuple[int, dict[str, Any]]] = {
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


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], owner: FakeLLMServer) -> None:
        self.owner = owner
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, ChatCompletionsHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client disconnects are part of the fault scenarios; anything else is a real bug worth printing.
        exc = sys.exc_info()[1]
        if isinstance(exc, DISCONNECT_ERRORS) or (isinstance(exc, OSError) and self.owner._stopping):
            return
        super().handle_error(request, client_address)


class ChatCompletionsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: with Nagle's algorithm a kept-alive connection's small writes wait ~40 ms for the client's
    # delayed ACK, which skews every latency measured against this server.
    disable_nagle_algorithm = True
    server: FakeHTTPServer
    server_version = "FakeLLM/1.0"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(*DISCONNECT_ERRORS):
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
        self._send_body(status, json.dumps(payload).encode())

    def _send_body(self, status: int, data: bytes, *, cut: bool = False) -> None:
        """Send a JSON body; ``cut`` sends half of it, then drops the connection."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)
        self.wfile.flush()
        if cut:
            self._abort()

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
            status, payload = ERROR_BODIES["401"]
            self._send_json(status, payload)
            return
        self._answer(owner, body, owner._next_reply(body), number, headers.get("authorization"))

    def _answer(
        self, owner: FakeLLMServer, body: dict[str, Any], reply: FakeReply, number: int, auth: str | None = None
    ) -> None:
        if reply.delay > 0:
            time.sleep(reply.delay)
        if reply.fault in ERROR_BODIES:
            status, payload = ERROR_BODIES[reply.fault]
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
            self._send_body(200, b'{"id": "chatcmpl-fake", "choices": [ this is not json')
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
                "arguments": arguments_string(reply.function_call.get("arguments")),
            }
            finish_reason = "function_call"
        elif message["content"] is None:
            message["content"] = ""

        chunks = split_into_chunks(reply.content or "")
        payload = {
            **_envelope("chat.completion", number, body, reply),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": reply_usage(body, reply, len(chunks) + tool_tokens(tool_calls, reply)),
        }
        self._send_body(200, json.dumps(payload).encode(), cut=reply.fault == "cut")

    # --- streaming ------------------------------------------------------------------------------

    def _answer_stream(self, owner: FakeLLMServer, body: dict[str, Any], reply: FakeReply, number: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        base = _envelope("chat.completion.chunk", number, body, reply)

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
                for piece in split_arguments(tc["arguments"]):
                    event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            finish_reason = "tool_calls"
        elif reply.function_call is not None:
            event({"function_call": {"name": reply.function_call.get("name", ""), "arguments": ""}})
            for piece in split_arguments(arguments_string(reply.function_call.get("arguments"))):
                event({"function_call": {"arguments": piece}})
            finish_reason = "function_call"

        event({}, finish_reason)
        stream_options = body.get("stream_options") or {}
        if isinstance(stream_options, dict) and stream_options.get("include_usage"):
            self._write_event(
                {**base, "choices": [], "usage": reply_usage(body, reply, sent + tool_tokens(tool_calls, reply))}
            )
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # terminating zero-length chunk


def _envelope(kind: str, number: int, body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
    """The fields a reply and each of its chunks share."""
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": kind,
        "created": int(time.time()),
        "model": reply.model or body.get("model") or "fake-model",
        "system_fingerprint": "fp_fake",
    }
