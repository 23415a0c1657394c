"""The example site's chat page in a real Chromium: what a person sees when they chat.

The offline demo model answers "You said: <the message>", a word at a time (20 ms apart here), so a
test knows every reply in advance and can watch it grow.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, expect

WORDS = " ".join(f"word{i}" for i in range(30))
MARKDOWN = (
    "Replies are **Markdown**, with *italic*, [Django](https://docs.djangoproject.com/) links and code:\n\n"
    '```python\nprint("<hello>")\n```'
)

# Records each text the newest assistant reply shows, as it changes, into window.__seen
# (starting over when a newer reply appears).
WATCH_REPLIES = """() => {
  window.__seen = [];
  const log = document.getElementById("chat-messages");
  const initial = [...log.querySelectorAll('[data-testid="chat-reply"]')].pop() || null;
  let newest = initial;
  new MutationObserver(() => {
    const last = [...log.querySelectorAll('[data-testid="chat-reply"]')].pop() || null;
    if (last === initial) return;
    if (last !== newest) [newest, window.__seen] = [last, []];
    const text = last.textContent;
    if (text && window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
  }).observe(log, { subtree: true, childList: true, characterData: true });
}"""


def _send(page: Page, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-send").click()


def _session_uuid(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"\?session="))
    return parse_qs(urlsplit(page.url).query)["session"][0]


def _assert_streamed(page: Page, final: str, at_least: int = 10) -> None:
    """The reply grew on the page a piece at a time, each text a prefix of the next, up to ``final``."""
    seen = page.evaluate("window.__seen")
    assert seen[-1] == final
    assert len(seen) >= at_least, seen
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False)), seen


def _stored(page: Page, session_uuid: str) -> list[tuple[str, str | None]]:
    response = page.request.get(f"/api/sessions/{session_uuid}/messages/")
    assert response.ok, response.text()
    return [(m["role"], m.get("content")) for m in response.json()["results"]]


def test_a_reply_streams_in_word_by_word_and_a_reload_shows_the_history(pages):
    page = pages.new()
    page.goto("/")
    names = page.get_by_test_id("chat-model").evaluate_all("links => links.map((a) => a.dataset.name)")
    assert {"simple_assistant", "say_hello_bot"} <= set(names)
    expect(page.get_by_test_id("admin-link")).to_have_attribute("href", "/admin/")
    schema_link = page.get_by_test_id("schema-link")
    expect(schema_link).to_have_attribute("href", re.compile(r"^/api/(docs|schema)/$"))

    page.get_by_test_id("chat-model").and_(page.locator("[data-name=simple_assistant]")).click()
    expect(page.locator("#chat-title")).to_have_text("simple_assistant")
    status = page.get_by_test_id("chat-status")
    expect(status).to_have_attribute("data-status", "ready")
    page.evaluate(WATCH_REPLIES)
    _send(page, WORDS)

    turn = page.get_by_test_id("chat-turn").last
    expect(turn.get_by_test_id("chat-reply")).to_have_text(f"You said: {WORDS}")
    expect(turn.get_by_test_id("chat-tokens")).to_have_text(re.compile(r"^\d+ in / \d+ out$"))
    expect(turn.get_by_test_id("chat-cost")).to_have_text("$0.000000")
    expect(status).to_have_attribute("data-status", "idle")
    _assert_streamed(page, f"You said: {WORDS}")
    session_uuid = _session_uuid(page)
    assert _stored(page, session_uuid) == [("user", WORDS), ("assistant", f"You said: {WORDS}")]
    tokens = turn.get_by_test_id("chat-tokens").inner_text()

    page.reload()
    expect(status).to_have_attribute("data-status", "idle")
    expect(page.get_by_test_id("chat-user-message")).to_have_text([WORDS])
    expect(page.get_by_test_id("chat-reply")).to_have_text([f"You said: {WORDS}"])
    # Tokens and cost of a turn from the history come from the stored run: the same numbers.
    expect(page.get_by_test_id("chat-tokens")).to_have_text([tokens])
    expect(page.get_by_test_id("chat-cost")).to_have_text(["$0.000000"])

    # A new chat starts empty; the sidebar's link resumes the session.
    page.get_by_test_id("new-chat").click()
    expect(status).to_have_attribute("data-status", "ready")
    expect(page.get_by_test_id("chat-turn")).to_have_count(0)
    page.locator(f'[data-testid=session-link][data-uuid="{session_uuid}"]').click()
    expect(status).to_have_attribute("data-status", "idle")
    expect(page.get_by_test_id("chat-reply")).to_have_text([f"You said: {WORDS}"])

    # The conversation goes on in the same session.
    _send(page, "Hello")
    expect(page.get_by_test_id("chat-reply")).to_have_text([f"You said: {WORDS}", "Hello! What can I help you with?"])
    expect(page.get_by_test_id("chat-tokens")).to_have_count(2)
    assert _session_uuid(page) == session_uuid
    assert len(_stored(page, session_uuid)) == 4


def test_html_in_a_reply_is_shown_as_text_and_runs_nothing(pages):
    payload = (
        '**bold** <script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> '
        "[a link](javascript:window.__pwned=3) [docs](https://example.com/docs) `<b>code</b>`"
    )
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    _send(page, payload)

    reply = page.get_by_test_id("chat-turn").last.get_by_test_id("chat-reply")
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("chat-tokens")).to_be_visible()
    for visited in ("live", "reloaded"):
        # Markdown is rendered; every piece of HTML is text on the page.
        expect(reply.locator("strong")).to_have_text("bold")
        expect(reply.locator("code")).to_have_text("<b>code</b>")
        expect(reply).to_contain_text('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">')
        expect(reply).to_contain_text("[a link](javascript:window.__pwned=3)")
        expect(reply.locator("script, img, b")).to_have_count(0)
        expect(reply.locator("a")).to_have_count(1)
        expect(reply.locator("a")).to_have_attribute("href", "https://example.com/docs")
        expect(reply.locator("a")).to_have_attribute("rel", "nofollow noopener noreferrer")
        expect(page.get_by_test_id("chat-user-message").last).to_have_text(payload)
        expect(page.locator("#chat-messages img, #chat-messages script")).to_have_count(0)
        assert page.evaluate("window.__pwned") is None, visited
        if visited == "live":
            page.reload()
            expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
            reply = page.get_by_test_id("chat-turn").last.get_by_test_id("chat-reply")


def test_markdown_and_a_function_call_answered_from_the_page(pages):
    # Tall enough for the whole conversation: this page's screenshot is docs/example-site.md's (docs/chat-page.png).
    page = pages.new(viewport={"width": 1280, "height": 960})
    page.goto("/?chat_model=simple_assistant")
    _send(page, "Hello")
    expect(page.get_by_test_id("chat-reply")).to_have_text(["Hello! What can I help you with?"])

    _send(page, MARKDOWN)
    reply = page.get_by_test_id("chat-reply").nth(1)
    expect(reply.locator("strong")).to_have_text("Markdown")
    expect(reply.locator("em")).to_have_text("italic")
    expect(reply.locator("pre code.language-python")).to_have_text('print("<hello>")')
    expect(reply.locator("p")).to_have_count(1)
    expect(reply.locator("a[href='https://docs.djangoproject.com/']")).to_have_text("Django")

    page.get_by_test_id("chat-demo-tool").check()
    _send(page, "What's the weather in Boston?")
    call_turn = page.get_by_test_id("chat-turn").nth(2)
    expect(call_turn.get_by_test_id("chat-tool-calls")).to_have_text('→ get_weather({"location": "Boston"})')
    expect(call_turn.get_by_test_id("chat-tokens")).to_have_text(re.compile(r"^\d+ in / \d+ out$"))

    call_turn.get_by_test_id("tool-result-input").fill("13 degrees celsius")
    call_turn.get_by_test_id("tool-result-send").click()
    expect(page.get_by_test_id("chat-tool-result")).to_have_text(
        re.compile(r"get_weather returned\s*13 degrees celsius")
    )
    expect(page.get_by_test_id("chat-reply").last).to_have_text("It's 13 degrees celsius in Boston.")
    expect(page.get_by_test_id("tool-result-form")).to_have_count(0)

    session_uuid = _session_uuid(page)
    stored = page.request.get(f"/api/sessions/{session_uuid}/messages/").json()["results"]
    assert [m["role"] for m in stored][-4:] == ["user", "assistant", "tool", "assistant"]
    assert stored[-2]["tool_call_id"] == stored[-3]["tool_calls"][0]["id"]

    # After a reload the call, its answer and the final reply are all there.
    page.reload()
    expect(page.get_by_test_id("chat-tool-calls")).to_have_text('→ get_weather({"location": "Boston"})')
    expect(page.get_by_test_id("chat-reply").last).to_have_text("It's 13 degrees celsius in Boston.")
    expect(page.get_by_test_id("chat-tokens")).to_have_count(4)


def test_two_tabs_on_one_session_both_stream_the_run_and_a_reconnect_resyncs(pages):
    first = pages.new()
    first.goto("/?chat_model=simple_assistant")
    _send(first, "Hello")
    expect(first.get_by_test_id("chat-reply")).to_have_text(["Hello! What can I help you with?"])
    session_uuid = _session_uuid(first)

    second = pages.new()
    second.goto(f"/?session={session_uuid}")
    expect(second.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    expect(second.get_by_test_id("chat-reply")).to_have_text(["Hello! What can I help you with?"])

    # A run sent from the first tab streams into both, live.
    for page in (first, second):
        page.evaluate(WATCH_REPLIES)
    _send(first, WORDS)
    for page in (first, second):
        expect(page.get_by_test_id("chat-user-message").last).to_have_text(WORDS)
        expect(page.get_by_test_id("chat-reply").last).to_have_text(f"You said: {WORDS}")
        expect(page.get_by_test_id("chat-turn").last.get_by_test_id("chat-tokens")).to_be_visible()
        _assert_streamed(page, f"You said: {WORDS}")
    assert (
        first.get_by_test_id("chat-tokens").all_inner_texts() == second.get_by_test_id("chat-tokens").all_inner_texts()
    )

    # The second tab's socket goes away; a turn happens without it; when it comes back it catches up.
    second.evaluate("window.chatPage.chat.close()")
    expect(second.get_by_test_id("chat-status")).to_have_attribute("data-status", "closed")
    _send(first, "Are you still there?")
    expect(first.get_by_test_id("chat-reply").last).to_have_text("You said: Are you still there?")
    expect(first.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    expect(second.get_by_test_id("chat-turn")).to_have_count(2)

    second.evaluate("window.chatPage.chat.open()")
    expect(second.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    expect(second.get_by_test_id("chat-user-message").last).to_have_text("Are you still there?")
    expect(second.get_by_test_id("chat-reply")).to_have_text(
        ["Hello! What can I help you with?", f"You said: {WORDS}", "You said: Are you still there?"]
    )
    expect(second.get_by_test_id("chat-tokens")).to_have_count(3)
    assert len(_stored(second, session_uuid)) == 6


def test_errors_are_shown_where_they_happened(pages):
    page = pages.new()

    # Refused before the model is called: the message does not fit the context window.
    page.goto("/?chat_model=tiny_window")
    _send(page, "This message is far too long for a forty-token context window. " * 4)
    expect(page.locator("[data-testid=chat-error][data-code=context_window_exceeded]")).to_be_visible()
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")

    # The model call fails: the turn says why, and keeps saying it after a reload.
    page.goto("/?chat_model=misconfigured")
    _send(page, "Hello?")
    turn = page.get_by_test_id("chat-turn").last
    expect(turn.get_by_test_id("chat-error")).to_contain_text("The run failed (")
    error = turn.get_by_test_id("chat-error").inner_text()
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    page.reload()
    expect(page.get_by_test_id("chat-user-message")).to_have_text(["Hello?"])
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("chat-error")).to_have_text(error)


def test_stop_keeps_what_was_written(pages):
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    long_text = " ".join(f"w{i}" for i in range(300))
    _send(page, long_text)
    turn = page.get_by_test_id("chat-turn").last
    expect(turn.get_by_test_id("chat-reply")).to_contain_text("You said: w0 w1 w2")
    page.get_by_test_id("chat-stop").click()
    expect(turn.locator(".badge")).to_have_text("stopped")
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "idle")
    shown = turn.get_by_test_id("chat-reply").inner_text()
    assert shown.startswith("You said: w0 w1 w2") and len(shown) < len(f"You said: {long_text}")
    stored = _stored(page, _session_uuid(page))
    assert stored[-1] == ("assistant", shown)


MARKDOWN_BLOCKS = """# Plan

1. first step
2. second step

- apples
- pears

| city | temp |
|------|------|
| Boston | 13 |

> quoted

![tracker](https://example.com/pixel.png)"""


def test_lists_headings_and_tables_are_rendered(pages):
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    _send(page, MARKDOWN_BLOCKS)
    reply = page.get_by_test_id("chat-turn").last.get_by_test_id("chat-reply")
    expect(page.get_by_test_id("chat-turn").last.get_by_test_id("chat-tokens")).to_be_visible()
    # The offline model answers "You said: <message>", so the heading starts its first line as text.
    expect(reply.locator("ol > li")).to_have_text(["first step", "second step"])
    expect(reply.locator("ul > li")).to_have_text(["apples", "pears"])
    expect(reply.locator("table th")).to_have_text(["city", "temp"])
    expect(reply.locator("table td")).to_have_text(["Boston", "13"])
    expect(reply.locator("blockquote")).to_have_text("quoted")
    # No image is fetched from a URL the model wrote.
    expect(reply.locator("img")).to_have_count(0)


def test_a_message_refused_up_front_starts_no_chat(pages):
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    page.get_by_test_id("chat-input").fill("x" * 100_001)
    page.get_by_test_id("chat-send").click()
    expect(page.locator("[data-testid=chat-error][data-code=invalid_messages]")).to_contain_text("100,001 characters")
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "ready")
    assert "session=" not in page.url
    sessions = page.request.get("/api/sessions/").json()["results"]
    # Then a message that fits starts the chat, labelled by that message in the recent chats.
    _send(page, "A question about lighthouses")
    expect(page.get_by_test_id("chat-reply")).to_have_text(["You said: A question about lighthouses"])
    assert len(page.request.get("/api/sessions/").json()["results"]) == len(sessions) + 1
    page.reload()
    link = page.locator(f'[data-testid=session-link][data-uuid="{_session_uuid(page)}"]')
    expect(link.locator(".label")).to_have_text("A question about lighthouses")


def test_the_api_link_opens_a_readable_page(pages):
    page = pages.new()
    page.goto("/")
    link = page.get_by_test_id("schema-link")
    if link.inner_text() == "API schema (YAML)":
        # drf-spectacular-sidecar is not installed: the link says what it gives.
        assert page.request.get(link.get_attribute("href")).text().startswith("openapi: 3.1.0")
        return
    assert link.inner_text() == "API docs"
    link.click()
    expect(page.locator(".swagger-ui .title")).to_contain_text("chatmodel_app API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()


def test_the_site_has_an_icon(pages):
    page = pages.new()
    page.goto("/")
    href = page.locator("link[rel=icon]").get_attribute("href")
    response = page.request.get(href)
    assert response.ok and response.headers["content-type"].startswith("image/svg+xml")
    assert page.request.get("/favicon.ico").ok


def test_enter_sends_on_the_chat_page_and_in_the_playground(pages):
    page = pages.new()
    page.goto("/?chat_model=simple_assistant")
    expect(page.get_by_test_id("chat-status")).to_have_attribute("data-status", "ready")
    page.get_by_test_id("chat-input").fill("Hello")
    page.get_by_test_id("chat-input").press("Enter")
    expect(page.get_by_test_id("chat-reply")).to_have_text(["Hello! What can I help you with?"])

    page.goto("/admin/chatmodel_app/chatmodel/")
    page.get_by_role("link", name="say_hello_bot", exact=True).click()
    page.locator("[data-testid=version-table] tr[data-version='1'] a", has_text="v1").click()
    page.get_by_test_id("open-playground").click()
    expect(page.locator("#playground-status")).to_have_attribute("data-status", "idle")
    field = page.locator("#playground-input")
    # Shift+Enter is a new line, Enter sends.
    field.fill("Hello")
    field.press("Shift+Enter")
    field.press_sequentially("there")
    expect(field).to_have_value("Hello\nthere")
    field.press("Enter")
    expect(page.get_by_test_id("playground-turn")).to_have_count(1)
    expect(page.get_by_test_id("playground-turn").last.get_by_test_id("playground-reply")).not_to_be_empty()
    expect(page.locator("#playground-status")).to_have_attribute("data-status", "idle")
