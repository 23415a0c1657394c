"""A brand-new Django site set up exactly as docs/getting-started.md says: its checks pass, its schema answers,
and its websocket streams a run. The package is the one installed in this environment (as `pip install` would)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.timeout(300)

SETTINGS_ADDITIONS = """
INSTALLED_APPS += ["channels", "rest_framework", "rest_framework.authtoken", "drf_spectacular", "chatmodel_app"]
ASGI_APPLICATION = "mysite.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "chatmodel_app.layers.InMemoryChannelLayer"}}
"""

URLS = """from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chatmodel_app.urls")),
]
"""

ASGI = """import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter

from chatmodel_app.asgi import LiveWorker
from chatmodel_app.routing import websocket_urlpatterns
from chatmodel_app.ws_auth import ChatModelAuthMiddlewareStack, SameOriginValidator

application = LiveWorker(ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": SameOriginValidator(ChatModelAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
}))
"""


def _run(cwd: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "PYTEST"))}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MODE="PRODUCTION", PYTHONPATH=str(tmp_path))
    django_admin = [sys.executable, "-m", "django"]
    _run(tmp_path, *django_admin, "startproject", "mysite", ".", env=env)
    settings = tmp_path / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + SETTINGS_ADDITIONS)
    (tmp_path / "mysite" / "urls.py").write_text(URLS)
    (tmp_path / "mysite" / "asgi.py").write_text(ASGI)
    manage = [sys.executable, "manage.py"]
    _run(tmp_path, *manage, "migrate", "--noinput", env=env)
    checks = _run(tmp_path, *manage, "check", env=env)
    _run(tmp_path, *manage, "chatmodel_demo", env=env)
    token = (
        _run(
            tmp_path,
            *manage,
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token; "
            "print('TOKEN', Token.objects.create(user=User.objects.create_user('ann')).key)",
            env=env,
        )
        .split("TOKEN ")[1]
        .split()[0]
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/schema/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "token": token, "checks": checks}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:  # a loaded machine: daphne still finishing its start-up imports
            server.kill()
            server.wait(10)


def test_a_site_set_up_from_the_docs_passes_checks_serves_the_schema_and_streams(site):
    assert "System check identified no issues" in site["checks"], site["checks"]
    assert httpx.get(f"{site['url']}/api/schema/", timeout=30).status_code == 200

    headers = {"Authorization": f"Token {site['token']}"}
    with httpx.Client(base_url=site["url"], headers=headers, timeout=60) as client:
        created = client.post("/api/chat-models/simple_assistant/sessions/", json={})
        assert created.status_code == 201, created.text
    session_uuid = created.json()["uuid"]

    async def stream() -> list[dict]:
        from websockets.asyncio.client import connect

        url = f"ws://127.0.0.1:{site['port']}/ws/chatmodel/sessions/{session_uuid}/"
        async with connect(url, additional_headers=headers, origin=f"http://127.0.0.1:{site['port']}") as ws:
            await ws.send(json.dumps({"type": "add_messages", "messages": [{"role": "user", "content": "Hello"}]}))
            await ws.send(json.dumps({"type": "run", "stream": True}))
            seen = []
            async with asyncio.timeout(120):
                while not seen or seen[-1]["type"] not in ("run.completed", "run.failed", "error"):
                    seen.append(json.loads(await ws.recv()))
            return seen

    seen = asyncio.run(stream())
    assert seen[-1]["type"] == "run.completed", seen
    assert "".join(e.get("delta", "") for e in seen if e["type"] == "run.delta") == "Hello! What can I help you with?"
