"""Importing the app and starting Django never pays for litellm (seconds and ~170 MB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "example_project.settings"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_import_and_django_setup_do_not_import_litellm():
    result = run_python(
        "import sys\n"
        "import chatmodel_app\n"
        "assert 'litellm' not in sys.modules, 'import chatmodel_app'\n"
        "assert 'chatmodel_app.models' not in sys.modules, 'models imported by the package'\n"
        "import django; django.setup()\n"
        "assert 'litellm' not in sys.modules, 'django.setup()'\n"
        "from chatmodel_app import ChatModel, LLMResponse, LLMStreamResponse, ChatModelConfig\n"
        "import chatmodel_app.services, chatmodel_app.client, chatmodel_app.context, chatmodel_app.llm\n"
        "assert 'litellm' not in sys.modules, 'importing the pipeline'\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_first_model_call_imports_litellm_offline_and_quietly(tmp_path):
    # A .env in the working directory must not be loaded (LITELLM_MODE=PRODUCTION).
    (tmp_path / ".env").write_text("CHATMODEL_DOTENV_LOADED=yes\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")} | {
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
    }
    code = (
        "import os, sys\n"
        "from chatmodel_app import llm\n"
        "completion = llm.complete({'model': 'offline/demo', 'messages': [{'role': 'user', 'content': 'hi'}]})\n"
        "assert 'litellm' in sys.modules\n"
        "assert os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] == 'True'\n"
        "assert os.environ['LITELLM_MODE'] == 'PRODUCTION'\n"
        "assert 'CHATMODEL_DOTENV_LOADED' not in os.environ, '.env was loaded'\n"
        "print(completion.content)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello! What can I help you with?"
    # No attempt to fetch the remote cost map (it would warn about the failed fetch).
    assert "cost map" not in result.stderr.lower()


def test_the_checks_hold_the_preload_and_the_workers_first_connection_starts_it():
    """Check W003 imports asgi.py, whose preload must not start for ``migrate``, ``check`` and the like; ``runserver``
    runs the checks, then serves, and its first connection starts the preload asgi.py asked for."""
    result = run_python(
        "import asyncio, sys, threading\n"
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('check')\n"
        "assert 'example_project.asgi' in sys.modules, 'W003 did not import the ASGI module'\n"
        "def preloads():\n"
        "    return [t for t in threading.enumerate() if t.name == 'chatmodel-litellm-preload']\n"
        "assert not preloads() and 'litellm' not in sys.modules, 'manage.py check imported litellm'\n"
        "from example_project.asgi import application\n"
        "requests = [{'type': 'http.request', 'body': b'', 'more_body': False}]\n"
        "async def receive():\n"
        "    if requests:\n"
        "        return requests.pop()\n"
        "    await asyncio.Event().wait()  # the client stays connected until the response is sent\n"
        "async def send(message):\n"
        "    pass\n"
        "scope = {'type': 'http', 'method': 'GET', 'path': '/favicon.ico', 'headers': [(b'host', b'127.0.0.1')],\n"
        "         'query_string': b'', 'scheme': 'http', 'server': ('127.0.0.1', 80), 'asgi': {'version': '3.0'}}\n"
        "asyncio.run(application(scope, receive, send))\n"
        "started = preloads()\n"
        "assert started or 'litellm' in sys.modules, 'no preload after the first request'\n"
        "for thread in started:\n"
        "    thread.join(120)\n"
        "assert 'litellm' in sys.modules\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_a_process_that_ends_during_the_preload_waits_for_it():
    """Shutdown must not stop the preload halfway through importing litellm (it can hang on the module locks)."""
    result = run_python(
        "import atexit\n"
        "import django; django.setup()\n"
        "from chatmodel_app.llm import _litellm, preload\n"
        "atexit.register(lambda: print('loaded at exit:', _litellm.is_loaded()))\n"
        "preload()\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded at exit: True"
