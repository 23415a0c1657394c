"""The React example page (/react/): useChat from @ai-sdk/react over the AI SDK UI message stream endpoint.

The page is the Vite build of example_project/frontend (`make frontend`); these tests drive it in Chromium.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

# Long enough that the offline model (a word every 20 ms here) is still writing when the page reloads.
WORDS = " ".join(f"word{i}" for i in range(300))
REPLY = f"You said: {WORDS}"


def _session(page) -> str:
    return parse_qs(urlsplit(page.url).query)["session"][0]


def _stored(page, session_uuid: str) -> list[dict]:
    response = page.request.get(f"/api/sessions/{session_uuid}/messages/")
    assert response.ok, response.text()
    return response.json()["results"]


def _send(page, text: str) -> None:
    page.get_by_test_id("react-input").fill(text)
    page.get_by_test_id("react-send").click()


def _reply(page):
    return page.get_by_test_id("react-assistant").last.get_by_test_id("react-text")


def _stop_and_check_it_stopped(page, session_uuid: str) -> None:
    page.get_by_test_id("react-stop").click()
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "ready")
    expect(page.get_by_test_id("react-assistant").last.get_by_test_id("react-stopped")).to_have_text("stopped")
    # The run is cancelled on the server: its partial reply is stored, marked cancelled, and nothing more comes.
    deadline = time.monotonic() + 10
    while True:
        stored = _stored(page, session_uuid)
        if stored[-1]["role"] == "assistant":
            break
        assert time.monotonic() < deadline, f"no reply was stored after the stop: {stored}"
        time.sleep(0.2)
    assert stored[-1]["metadata"].get("cancelled") is True, stored[-1]
    assert stored[-1]["content"].startswith("You said: word0 word1")
    assert stored[-1]["content"] != REPLY, "the run ended on its own: the stop did nothing"
    # The page shows what was stored, and nothing more comes.
    expect(_reply(page)).to_have_text(stored[-1]["content"])
    time.sleep(0.5)
    expect(_reply(page)).to_have_text(stored[-1]["content"])


def test_a_reply_streams_a_reload_mid_run_resumes_it_and_the_chat_goes_on(pages):
    page = pages.new()
    # From the chat page's sidebar link to the React page.
    page.goto("/?chat_model=simple_assistant")
    page.get_by_test_id("react-link").click()
    expect(page).to_have_url(re.compile(r"/react/\?chat_model=simple_assistant$"))

    _send(page, WORDS)
    expect(page.get_by_test_id("react-user").last).to_have_text(re.compile(re.escape(WORDS)))
    expect(_reply(page)).to_contain_text("word5")
    # Streaming: the reply is on the page while the run is still writing it.
    assert _reply(page).inner_text() != REPLY, "the reply arrived all at once"
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "streaming")
    expect(page).to_have_url(re.compile(r"/react/\?session=[0-9a-f-]{36}$"))
    session_uuid = _session(page)

    page.reload()
    # The stored history and the run in progress: the text so far at once, then the rest, live.
    expect(page.get_by_test_id("react-user")).to_have_count(1)
    expect(_reply(page)).to_contain_text("You said: word0 word1")
    assert _reply(page).inner_text() != REPLY, "the run had already ended: nothing was resumed"
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "streaming")
    expect(_reply(page)).to_have_text(REPLY)
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "ready")
    expect(page.get_by_test_id("react-assistant")).to_have_count(1)
    assert [m["content"] for m in _stored(page, session_uuid)] == [WORDS, REPLY]

    # After another reload (nothing to resume), the chat goes on from its stored history.
    page.reload()
    expect(_reply(page)).to_have_text(REPLY)
    _send(page, "and one more")
    expect(_reply(page)).to_have_text("You said: and one more")
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "ready")
    expect(page.get_by_test_id("react-error")).to_have_count(0)
    stored = _stored(page, session_uuid)
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", WORDS),
        ("assistant", REPLY),
        ("user", "and one more"),
        ("assistant", "You said: and one more"),
    ]


def test_stop_cancels_the_run_and_keeps_the_text_so_far(pages):
    page = pages.new()
    page.goto("/react/?chat_model=simple_assistant")
    _send(page, WORDS)
    expect(_reply(page)).to_contain_text("word5")
    _stop_and_check_it_stopped(page, _session(page))


def test_stop_works_on_a_resumed_stream(pages):
    page = pages.new()
    page.goto("/react/?chat_model=simple_assistant")
    _send(page, WORDS)
    expect(_reply(page)).to_contain_text("word5")
    session_uuid = _session(page)

    page.reload()
    expect(_reply(page)).to_contain_text("You said: word0 word1")
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "streaming")
    _stop_and_check_it_stopped(page, session_uuid)
    # The stopped reply is what a reload shows.
    stored = _stored(page, session_uuid)[-1]["content"]
    page.reload()
    expect(_reply(page)).to_have_text(stored)
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "ready")


def test_the_page_needs_a_login_and_an_unknown_chat_is_404(pages):
    page = pages.new(logged_in=False)
    page.goto("/react/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/react/$"))

    page = pages.new()
    response = page.goto("/react/?session=00000000-0000-4000-8000-000000000000")
    assert response is not None and response.status == 404


def test_a_refused_message_shows_why(pages):
    page = pages.new()
    page.goto("/react/?chat_model=tiny_window")
    _send(page, WORDS)
    error = page.get_by_test_id("react-error")
    expect(error).to_contain_text("fill the model's context window (40 tokens)")
    expect(error).to_contain_text("(context_window_exceeded)")
    expect(error).not_to_contain_text('{"')
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "error")


def test_a_chat_from_the_chat_page_goes_on_here(pages):
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    expect(page.get_by_test_id("chat-send")).to_be_enabled()
    page.get_by_test_id("chat-input").fill("Notes from the chat page")
    page.get_by_test_id("chat-send").click()
    expect(page.get_by_test_id("chat-reply").last).to_have_text("You said: Notes from the chat page")
    expect(page).to_have_url(re.compile(r"\?session="))
    session_uuid = _session(page)

    page.reload()
    page.get_by_test_id("react-link").click()
    expect(page).to_have_url(re.compile(rf"/react/\?session={session_uuid}$"))
    expect(page.get_by_test_id("react-user")).to_have_count(1)
    expect(page.get_by_test_id("react-user").get_by_test_id("react-text")).to_have_text("Notes from the chat page")
    expect(_reply(page)).to_have_text("You said: Notes from the chat page")
    _send(page, "more from React")
    expect(_reply(page)).to_have_text("You said: more from React")
    expect(page.get_by_test_id("react-status")).to_have_attribute("data-status", "ready")
    assert [m["content"] for m in _stored(page, session_uuid)] == [
        "Notes from the chat page",
        "You said: Notes from the chat page",
        "more from React",
        "You said: more from React",
    ]
