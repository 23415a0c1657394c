"""ASGI helpers for the host's ``asgi.py``."""

from __future__ import annotations

from typing import Any


class LiveWorker:
    """Wraps the host's ASGI application so this worker process can serve rejoins of its runs from the start.

    On its first connection (HTTP or websocket) it binds the server's event loop for event publishing and starts
    the worker's control channel (``services.live``), so a client rejoining a run of this worker through another
    worker gets the exact text so far, even before any websocket connected here. It also starts the LiteLLM
    preload that asgi.py asked for while the system checks were importing it (``runserver``; ``llm.preload``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.started = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.started and scope.get("type") in ("http", "websocket"):
            self.started = True
            from . import events
            from .llm.calls import preload_deferred
            from .services import live

            preload_deferred()
            events.bind_loop()
            await live.listen()
        await self.app(scope, receive, send)
