"""Named conversations and feedback on the example chat page in Chromium: 👍/👎, titles, rename, search,
archive and delete. The offline demo model answers "You said: <the message>" and titles a chat with the
first words of its first message."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect


def _send(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-send").click()


def _chat(page: Page, text: str) -> str:
    """Start a chat with ``text``; its session uuid once the reply is in."""
    page.goto("/?chat_model=simple_assistant")
    _send(page, text)
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("chat-reply")).to_have_text(f"You said: {text}")
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    expect(page).to_have_url(re.compile(r"\?session="))
    return parse_qs(urlsplit(page.url).query)["session"][0]


def _item(page: Page, session_uuid: str):
    return page.locator(f'#recent-sessions > li[data-uuid="{session_uuid}"]')


def test_thumbs_up_and_down_with_a_comment(pages):
    page = pages.new()
    word = f"marmot{uuid.uuid4().hex[:6]}"
    session_uuid = _chat(page, f"tell me about {word}")
    turn = page.get_by_test_id("chat-turn").last
    seq = turn.get_attribute("data-seq")
    url = f"/api/sessions/{session_uuid}/messages/{seq}/feedback/"

    turn.get_by_test_id("feedback-up").click()
    expect(turn.get_by_test_id("feedback-up")).to_have_attribute("aria-pressed", "true")
    expect(turn.get_by_test_id("feedback-down")).to_have_attribute("aria-pressed", "false")
    assert page.request.get(url).json()["feedback"]["rating"] == "up"

    turn.get_by_test_id("feedback-down").click()
    expect(turn.get_by_test_id("feedback-down")).to_have_attribute("aria-pressed", "true")
    turn.get_by_test_id("feedback-comment").fill("too literal")
    turn.get_by_test_id("feedback-comment").press("Enter")
    for _ in range(50):
        stored = page.request.get(url).json()["feedback"]
        if stored and stored["comment"] == "too literal":
            break
        page.wait_for_timeout(100)
    assert stored["rating"] == "down" and stored["comment"] == "too literal"

    # A reload shows the stored rating.
    page.reload()
    turn = page.get_by_test_id("chat-turn").last
    expect(turn.get_by_test_id("feedback-down")).to_have_attribute("aria-pressed", "true")
    expect(turn.get_by_test_id("feedback-comment")).to_have_value("too literal")
    # Pressing the chosen thumb again takes it back.
    turn.get_by_test_id("feedback-down").click()
    expect(turn.get_by_test_id("feedback-down")).to_have_attribute("aria-pressed", "false")
    for _ in range(50):
        if page.request.get(url).json()["feedback"] is None:
            break
        page.wait_for_timeout(100)
    assert page.request.get(url).json()["feedback"] is None


def test_titles_rename_search_archive_and_delete(pages):
    page = pages.new()
    word = f"quokka{uuid.uuid4().hex[:6]}"
    first = _chat(page, f"facts about {word} please")
    # The title made after the first exchange replaces the first message's text in the sidebar.
    expect(_item(page, first).get_by_test_id("session-title")).to_have_text(f"Facts about {word} please")
    assert page.request.get(f"/api/sessions/{first}/").json()["title_source"] == "auto"

    second = _chat(page, "an unrelated chat")
    expect(_item(page, first)).to_be_visible()

    # Rename the first chat in the sidebar.
    _item(page, first).hover()
    _item(page, first).get_by_test_id("session-rename").click()
    page.get_by_test_id("session-title-input").fill(f"Marsupial {word}")
    page.get_by_test_id("session-title-input").press("Enter")
    expect(_item(page, first).get_by_test_id("session-title")).to_have_text(f"Marsupial {word}")
    shown = page.request.get(f"/api/sessions/{first}/").json()
    assert (shown["title"], shown["title_source"]) == (f"Marsupial {word}", "user")
    page.reload()
    expect(_item(page, first).get_by_test_id("session-title")).to_have_text(f"Marsupial {word}")

    # Search: by the title, and by what was said.
    page.get_by_test_id("session-search").fill("marsupial " + word)
    expect(page.locator("#recent-sessions > li[data-uuid]")).to_have_count(1)
    expect(_item(page, first)).to_be_visible()
    page.get_by_test_id("session-search").fill("unrelated")
    expect(_item(page, second)).to_be_visible()
    expect(_item(page, first)).to_have_count(0)
    page.get_by_test_id("session-search").fill("nothing-says-this-" + word)
    expect(page.get_by_test_id("session-search-empty")).to_be_visible()
    page.get_by_test_id("session-search").fill("")
    expect(_item(page, first)).to_be_visible()

    # Archive: out of the list (and of a reload's), still there with ?archived=true.
    _item(page, first).hover()
    _item(page, first).get_by_test_id("session-archive").click()
    expect(_item(page, first)).to_have_count(0)
    page.reload()
    expect(_item(page, second)).to_be_visible()
    expect(_item(page, first)).to_have_count(0)
    archived = page.request.get("/api/sessions/", params={"archived": "true"}).json()["results"]
    assert first in [s["uuid"] for s in archived]

    # Delete the open chat: it is gone, and the page goes back to a new chat.
    page.once("dialog", lambda dialog: dialog.accept())
    _item(page, second).hover()
    _item(page, second).get_by_test_id("session-delete").click()
    expect(page).to_have_url(re.compile(r"\?chat_model=simple_assistant$"))
    assert page.request.get(f"/api/sessions/{second}/").status == 404
