"""The official ``openai`` JS package (Node) against a live daphne worker of the example project's /v1/.

tests/node/openai_client.mjs lists models, holds a conversation (a response, then a streamed one chained by
``previous_response_id``), streams a chat completion, and checks that another user's conversation is not found
and that ``instructions`` are refused; it prints what it saw. Node comes from the machine and ``openai`` from
tests/node/node_modules (``make node-deps``, which ``make test`` runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..live import ROOT, live_site
from .test_live import BOB

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("node") is None:
        pytest.fail("Node is not installed: the JS client tests need `node` (Node 20).", pytrace=False)
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail("tests/node/node_modules is missing: run `make node-deps` (npm ci in tests/node).", pytrace=False)
    with live_site(tmp_path_factory.mktemp("openai-js"), redis_db=13) as site:
        site.start("daphne")
        made = subprocess.run(
            [sys.executable, "-c", BOB], cwd=ROOT, env=site.env, capture_output=True, text=True, timeout=60, check=True
        )
        site.bob_token = made.stdout.strip().splitlines()[-1]
        yield site


def test_the_js_sdk_holds_a_conversation_streams_and_gets_its_usual_errors(site):
    worker = site.workers[0]
    result = subprocess.run(
        ["node", str(NODE_DIR / "openai_client.mjs")],
        cwd=NODE_DIR,
        env={**os.environ, "BASE_URL": worker.http, "TOKEN": site.token, "OTHER_TOKEN": site.bob_token},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"node failed:\n{result.stderr}\n--- server log ---\n{worker.log_text()[-3000:]}"
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert set(seen["models"]) == {"simple_assistant", "say_hello_bot"}
    assert seen["first"]["text"] == "You said: Tell me a story from JS"
    assert seen["first"]["status"] == "completed"
    assert seen["first"]["usage"]["total_tokens"] == (
        seen["first"]["usage"]["input_tokens"] + seen["first"]["usage"]["output_tokens"]
    )
    assert seen["streamText"] == "You said: and again"
    assert seen["sequenceOrdered"]
    assert seen["streamTypes"][0] == "response.created"
    assert seen["streamTypes"][-1] == "response.completed"
    assert "response.output_text.done" in seen["streamTypes"]
    assert seen["items"] == [
        ["message", "user", "Tell me a story from JS"],
        ["message", "assistant", "You said: Tell me a story from JS"],
        ["message", "user", "and again"],
        ["message", "assistant", "You said: and again"],
    ]
    assert seen["completionText"] == "Hello! What can I help you with?"
    assert seen["otherUser"] == "NotFoundError"
    assert seen["instructions"] == "BadRequestError"

    # The conversation is a session with its messages and runs, as the admin shows it.
    session_hex = seen["conversation"][len("conv_") :]
    runs = site.query(
        "SELECT r.status FROM chatmodel_app_run r JOIN chatmodel_app_session s ON s.id = r.session_id "
        "WHERE replace(CAST(s.uuid AS TEXT), '-', '') = %s ORDER BY r.id",
        (session_hex,),
    )
    assert runs == [("completed",), ("completed",)]
