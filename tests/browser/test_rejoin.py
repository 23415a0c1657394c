"""A page reloaded mid-run shows the reply so far at once, then the rest as it streams (rejoin)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

WORDS = " ".join(f"word{i}" for i in range(200))


def test_a_reload_mid_run_shows_the_text_so_far_and_the_run_continues(pages):
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    page.get_by_test_id("chat-input").fill(WORDS)
    page.get_by_test_id("chat-send").click()
    reply = page.get_by_test_id("chat-turn").last.get_by_test_id("chat-reply")
    expect(reply).to_contain_text("word5")
    expect(page).to_have_url(re.compile(r"\?session="))
    session_uuid = parse_qs(urlsplit(page.url).query)["session"][0]

    page.reload()
    # Straight after the reload, before the run ends: the text so far is there, and it keeps growing.
    reply = page.get_by_test_id("chat-reply").last
    expect(reply).to_contain_text("You said: word0 word1")
    shown = reply.inner_text()
    assert not shown.endswith("word199"), "the run had already ended: nothing was rejoined"
    expect(reply).to_have_text(f"You said: {WORDS}")
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    stored = page.request.get(f"/api/sessions/{session_uuid}/messages/").json()["results"]
    assert [m["content"] for m in stored] == [WORDS, f"You said: {WORDS}"]
