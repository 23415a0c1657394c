"""The AI SDK's own client in Node (``DefaultChatTransport`` of the ``ai`` package) against a live example site.

tests/node/ai_sdk_client.mjs runs one scenario per test against a daphne worker of the example project (the
demo chat models, offline, streaming a token every CHATMODEL_OFFLINE_TOKEN_DELAY seconds), and prints what
the client observed; these tests check it, and what the server stored, in the workers' database.
Node comes from the machine and ``ai`` from tests/node/node_modules (``make node-deps``, which ``make test`` runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live import live_site

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "ai_sdk_client.mjs"
# Slow enough that a run is still going while the client reloads and stops, fast enough for the suite.
TOKEN_DELAY = "0.03"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("node") is None:
        pytest.fail("Node is not installed: the AI SDK client tests need `node` (Node 18 or later).", pytrace=False)
    if not (NODE_DIR / "node_modules" / "ai").is_dir():
        pytest.fail("tests/node/node_modules is missing: run `make node-deps` (npm ci in tests/node).", pytrace=False)
    env = {"CHATMODEL_OFFLINE_TOKEN_DELAY": TOKEN_DELAY}
    with live_site(tmp_path_factory.mktemp("ai-sdk-live"), redis_db=12, env=env) as site:
        site.start("daphne")
        yield site


def run_node(site, scenario: str, **env: str) -> dict:
    worker = site.workers[0]
    result = subprocess.run(
        ["node", str(SCRIPT), scenario],
        cwd=NODE_DIR,
        env={**os.environ, "BASE_URL": worker.http, "TOKEN": site.token, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"node failed:\n{result.stderr}\n--- server log ---\n{worker.log_text()[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def stored(site, session_uuid: str) -> list[tuple]:
    """(seq, role, content, metadata) of a session's messages, from the workers' database."""
    rows = site.query(
        "SELECT m.seq, m.role, m.content, m.metadata FROM chatmodel_app_message m "
        "JOIN chatmodel_app_session s ON s.id = m.session_id WHERE s.uuid = %s ORDER BY m.seq",
        (session_uuid.replace("-", "") if _sqlite(site) else session_uuid,),
    )
    return [
        (seq, role, content, json.loads(meta) if isinstance(meta, str) else meta) for seq, role, content, meta in rows
    ]


def run_row(site, run_uuid: str) -> tuple:
    """(status, cancel_requested) of a run."""
    key = run_uuid.replace("-", "") if _sqlite(site) else run_uuid
    return site.query("SELECT status, cancel_requested FROM chatmodel_app_run WHERE uuid = %s", (key,))[0]


def _sqlite(site) -> bool:
    return "SQLITE_PATH" in site.env and not site.env.get("DATABASE_URL")


def _text_deltas(summary: dict) -> str:
    return "".join(c["delta"] for c in summary["chunks"] if c["type"] == "text-delta")


def test_send_stores_only_what_is_new_and_regenerate_answers_again(site):
    out = run_node(site, "send_and_regenerate")
    first, second, regenerated = out["first"], out["second"], out["regenerated"]
    assert first["types"][:3] == ["start", "start-step", "text-start"]
    assert first["types"][-3:] == ["text-end", "finish-step", "finish"]
    assert first["text"] == "Hello! What can I help you with?"
    assert first["message"]["role"] == "assistant"
    # The reply's id is its run's uuid, stable across resume; the metadata names the session.
    run_id = first["chunks"][0]["messageId"]
    assert first["message"]["id"] == run_id
    session_uuid = first["chunks"][0]["messageMetadata"]["sessionId"]
    assert second["text"] == "You said: Please repeat: blue green red"
    assert regenerated["message"]["id"] != second["message"]["id"]
    assert regenerated["text"] == second["text"]  # the offline model answers the same question the same way
    assert out["reconnectAfterEnd"] is True  # nothing is running: 204, the transport says null

    rows = stored(site, session_uuid)
    # Each user message stored once though the whole history was sent with each request; both replies kept.
    users = [(r[2], r[3].get("ui_message_id")) for r in rows if r[1] == "user"]
    assert users == [("hello there", "u-1"), ("Please repeat: blue green red", "u-2")]
    replies = [r[2] for r in rows if r[1] == "assistant"]
    assert replies == [first["text"], second["text"], regenerated["text"]]
    assert run_row(site, regenerated["chunks"][0]["messageId"])[0] == "completed"


def test_a_tool_call_arrives_as_tool_input_parts_and_its_result_goes_back(site):
    out = run_node(site, "tool_call")
    types = out["types"]
    assert "tool-input-start" in types and "tool-input-available" in types
    assert types.index("tool-input-start") < types.index("tool-input-available")
    available = next(c for c in out["chunks"] if c["type"] == "tool-input-available")
    assert available["toolName"] == "get_weather"
    assert available["input"] == {"location": "Paris"}
    streamed = "".join(c["inputTextDelta"] for c in out["chunks"] if c["type"] == "tool-input-delta")
    assert json.loads(streamed) == {"location": "Paris"}
    part = next(p for p in out["message"]["parts"] if p["type"] == "tool-get_weather")
    assert part["state"] == "input-available" and part["toolCallId"] == available["toolCallId"]
    assert out["chunks"][-1] == {
        "type": "finish",
        "finishReason": "tool-calls",
        "messageMetadata": out["chunks"][-1]["messageMetadata"],
    }

    # The client ran the tool and sent the reply back with its output: the answer continues the same message.
    answer = out["answer"]
    assert answer["chunks"][0]["messageId"] == out["message"]["id"]
    assert answer["text"] == "It's sunny in Paris."
    assert answer["message"]["id"] == out["message"]["id"]
    assert [p["type"] for p in answer["message"]["parts"] if p["type"] != "step-start"] == ["tool-get_weather", "text"]
    session_uuid = answer["chunks"][0]["messageMetadata"]["sessionId"]
    rows = stored(site, session_uuid)
    assert [(r[1], r[2] or "") for r in rows] == [
        ("user", "What is the weather in Paris?"),
        ("assistant", ""),  # the tool call
        ("tool", "sunny"),
        ("assistant", "It's sunny in Paris."),
    ]


def test_a_reloaded_client_resumes_the_run_and_reads_it_to_the_end(site):
    out = run_node(site, "resume")
    live, resumed = out["live"], out["resumed"]
    assert resumed is not None, "the run had ended before the client reconnected: nothing was resumed"
    run_id = live["chunks"][0]["messageId"]
    # A replay: the same message, from its start (the text so far, then the live rest), to the end.
    assert resumed["chunks"][0]["type"] == "start" and resumed["chunks"][0]["messageId"] == run_id
    assert resumed["types"][-1] == "finish"
    assert resumed["text"] == f"You said: {out['words']}"
    assert resumed["text"].startswith(live["text"]) and len(live["text"]) < len(resumed["text"])
    assert resumed["types"].count("text-delta") > 1  # the snapshot, then live deltas
    assert out["reconnectAfterEnd"] is True
    session_uuid = live["chunks"][0]["messageMetadata"]["sessionId"]
    # The aborted fetch did not stop the run: the whole reply is stored, once.
    assert [r[1:3] for r in stored(site, session_uuid)] == [("user", out["words"]), ("assistant", resumed["text"])]
    assert run_row(site, run_id)[0] == "completed"


def test_stop_on_a_resumed_stream_cancels_the_run_and_keeps_its_text(site):
    out = run_node(site, "stop")
    resumed, stopped = out["resumed"], out["stopped"]
    assert resumed is not None, "the run had ended before the client reconnected"
    run_id = resumed["chunks"][0]["messageId"]
    assert stopped == {"cancel_requested": True, "run_uuid": run_id, "status": "in_progress"}
    assert "abort" in resumed["types"] and resumed["types"][-1] == "finish"
    assert resumed["chunks"][-1]["finishReason"] == "other"
    assert resumed["chunks"][-1]["messageMetadata"]["status"] == "cancelled"
    text = resumed["text"]
    assert text.startswith("You said: word0") and len(text) < len(f"You said: {out['words']}")
    assert out["reconnectAfterStop"] is True
    session_uuid = resumed["chunks"][0]["messageMetadata"]["sessionId"]
    rows = stored(site, session_uuid)
    assert [r[1] for r in rows] == ["user", "assistant"]
    # What the client was shown is what is stored, marked cancelled.
    assert rows[1][2] == text and rows[1][3].get("cancelled") is True
    assert run_row(site, run_id)[0] == "cancelled"


def test_refusals_reach_the_client_as_errors(site):
    out = run_node(site, "errors")
    assert out["refused"] is not None and "system" in out["refused"]
    assert out["unauthenticated"] is not None and "credentials were not provided" in out["unauthenticated"]
