"""Branches on the example chat page in Chromium: regenerate, edit and "‹ 2/3 ›" switching.

The offline demo model answers "You said: <the message>", so an edited question has a reply the test
knows; a regenerated reply has the same text as the first, and the switcher's position tells them apart.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect


def _send(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-send").click()


def _path(page: Page, session_uuid: str) -> list[tuple[str, str | None]]:
    response = page.request.get(f"/api/sessions/{session_uuid}/path/")
    assert response.ok, response.text()
    return [(m["role"], m.get("content")) for m in response.json()["messages"]]


def _user(page: Page):
    return page.locator('#chat-messages > li[data-role="user"]')


def test_regenerate_edit_and_switch_on_the_chat_page(pages):
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    _send(page, "first question")
    turn = page.get_by_test_id("chat-turn").last
    # The first run of a fresh server process loads LiteLLM: on a busy machine that alone can take 15 s.
    expect(turn.get_by_test_id("chat-reply")).to_have_text("You said: first question", timeout=90_000)
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    expect(page).to_have_url(re.compile(r"\?session="))
    session_uuid = parse_qs(urlsplit(page.url).query)["session"][0]

    # Regenerate: a second reply, and the switcher says 2/2.
    page.get_by_test_id("regenerate").click()
    turn = page.get_by_test_id("chat-turn").last
    expect(turn.get_by_test_id("branch-position")).to_have_text("2/2")
    expect(turn.get_by_test_id("chat-reply")).to_have_text("You said: first question")
    expect(page.get_by_test_id("chat-turn")).to_have_count(1)
    runs = page.request.get(f"/api/sessions/{session_uuid}/messages/").json()["results"]
    assert [m["alternatives"] for m in runs] == [None, {"index": 1, "count": 2}]

    # Back to the first reply: 1/2.
    turn.get_by_test_id("branch-prev").click()
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("branch-position")).to_have_text("1/2")

    # Edit the question: the conversation continues from the edited one.
    _user(page).first.get_by_test_id("edit-message").click()
    page.get_by_test_id("edit-input").fill("second question")
    page.get_by_test_id("edit-save").click()
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("chat-reply")).to_have_text("You said: second question")
    expect(_user(page)).to_have_count(1)
    expect(_user(page).first.get_by_test_id("chat-user-message")).to_have_text("second question")
    expect(_user(page).first.get_by_test_id("branch-position")).to_have_text("2/2")
    assert _path(page, session_uuid) == [("user", "second question"), ("assistant", "You said: second question")]

    # Switch the question back: the first conversation returns, with its reply as it was left (1/2).
    _user(page).first.get_by_test_id("branch-prev").click()
    expect(_user(page).first.get_by_test_id("chat-user-message")).to_have_text("first question")
    expect(_user(page).first.get_by_test_id("branch-position")).to_have_text("1/2")
    expect(page.get_by_test_id("chat-turn")).to_have_count(1)
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("branch-position")).to_have_text("1/2")

    # A reload shows the same path.
    page.reload()
    expect(_user(page).first.get_by_test_id("chat-user-message")).to_have_text("first question")
    expect(_user(page).first.get_by_test_id("branch-position")).to_have_text("1/2")
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("chat-reply")).to_have_text("You said: first question")
