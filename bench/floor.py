"""The floor of the websocket benchmarks: the Channels consumer a developer would write instead of the app.

    daphne -b 127.0.0.1 -p 8001 bench.floor:application

One ``AsyncWebsocketConsumer`` on the app's URL (``/ws/chatmodel/sessions/<uuid>/``) that speaks the
app's frames, so the same client drives both: ``add_messages`` keeps the messages in memory and
answers ``messages.added``; ``run`` calls ``litellm.acompletion(stream=True)`` with the system
prompt and those messages and sends each delta as a ``run.delta`` frame, then ``run.completed``.
No database, no authentication, no channel layer, no history beyond the socket: the least a
site must do to stream a model's reply to a browser. The model comes from the environment:
``BENCH_FLOOR_API_BASE`` (the fake server's URL) and ``OPENAI_API_KEY``; served by daphne, as the
app's worker is. LiteLLM is configured as the app configures it (offline cost map, quiet), and
imported when the worker starts.
"""

from __future__ import annotations

import json
import logging
import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-floor",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        DATABASES={},
        CHANNEL_LAYERS={},
        USE_TZ=True,
    )
    django.setup()

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
os.environ.setdefault("LITELLM_LOG", "ERROR")
import litellm  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

litellm.suppress_debug_info = True
litellm.telemetry = False
litellm.drop_params = True
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MODEL = "openai/fake-model"
SYSTEM_PROMPT = "You are a helpful assistant."  # bench.common.SYSTEM_PROMPT, without importing the bench here


class FloorConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = json.loads(text_data or "{}")
        if frame.get("type") == "add_messages":
            self.messages += frame["messages"]
            await self.send(json.dumps({"type": "messages.added"}))
        elif frame.get("type") == "run":
            try:
                reply = []
                stream = await litellm.acompletion(
                    model=MODEL,
                    api_base=os.environ["BENCH_FLOOR_API_BASE"],
                    api_key=os.environ.get("OPENAI_API_KEY"),
                    messages=self.messages,
                    stream=True,
                )
                async for chunk in stream:
                    text = chunk.choices[0].delta.content if chunk.choices else None
                    if text:
                        reply.append(text)
                        await self.send(json.dumps({"type": "run.delta", "delta": text}))
            except Exception as exc:
                await self.send(json.dumps({"type": "run.failed", "error": f"{type(exc).__name__}: {exc}"}))
                return
            self.messages.append({"role": "assistant", "content": "".join(reply)})
            await self.send(json.dumps({"type": "run.completed"}))


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/chatmodel/sessions/<uuid:session_uuid>/", FloorConsumer.as_asgi())])}
)
