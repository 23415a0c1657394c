"""``FakeLLMServer``: the fake OpenAI-compatible server's lifecycle, scripting and inspection."""

from __future__ import annotations

import collections
import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any

from .handler import FakeHTTPServer
from .replies import FakeReply, arguments_string, echo_reply


def refused_url() -> str:
    """Return a ``http://127.0.0.1:PORT/v1`` URL for a port nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


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
        self._httpd: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind the socket and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping = False
        self._httpd = FakeHTTPServer((self.host, self.port), self)
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
            arguments = arguments_string(tc.get("arguments"))
            calls.append({"id": call_id, "name": tc.get("name", ""), "arguments": arguments})
        return calls
