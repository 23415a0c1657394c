"""The admin's prompt workflow in a real Chromium: edit a prompt into a new version, publish it, try it.

The element hooks are the ones docs/admin.md (section "Playground") promises for browser tests.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

NEW_PROMPT = "You are a concise assistant. Answer in one sentence."


def test_edit_a_prompt_into_a_new_version_publish_it_and_chat_with_it(pages):
    page = pages.new(logged_in=False)
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.locator("input[type=submit]").click()
    expect(page.locator("#site-name")).to_be_visible()

    # The chat model's page lists its versions; v1 is the published one.
    page.goto("/admin/chatmodel_app/chatmodel/")
    page.get_by_role("link", name="prompt_lab", exact=True).click()
    page.locator("[data-testid=version-table] tr[data-version='1'] a", has_text="v1").click()
    expect(page.locator("#id_system_prompt")).to_have_value("You are helpful.")

    # Edit the prompt and save it as a new version: v1 stays as it was.
    page.fill("#id_system_prompt", NEW_PROMPT)
    page.get_by_test_id("save-as-new-version").click()
    expect(page.locator(".messagelist")).to_contain_text("Saved as new draft")
    expect(page.locator("#id_system_prompt")).to_have_value(NEW_PROMPT)
    new_version_url = page.url

    # Publish it.
    page.get_by_test_id("publish-version").click()
    page.get_by_test_id("confirm-publish").click()
    expect(page.locator(".messagelist")).to_contain_text("published v2")
    page.goto(new_version_url)
    expect(page.locator("#version-published")).to_be_visible()

    # Chat with it in the playground, streamed over the websocket.
    page.get_by_test_id("open-playground").click()
    expect(page.locator("#playground-status")).to_have_attribute("data-status", "idle")
    expect(page.get_by_test_id("playground")).to_contain_text(NEW_PROMPT)
    page.locator("#playground-input").fill("Hello there")
    page.locator("#playground-send").click()
    turn = page.get_by_test_id("playground-turn").last
    expect(turn.get_by_test_id("playground-reply")).to_have_text("Hello! What can I help you with?")
    expect(turn.get_by_test_id("playground-tokens")).to_have_text(re.compile(r"^\d+ in / \d+ out$"))
    expect(page.locator("#playground-status")).to_have_attribute("data-status", "idle")
    session_uuid = page.evaluate("window.chatmodelPlayground.sessionUuid")
    session = page.request.get(f"/api/sessions/{session_uuid}/")
    assert session.ok and session.json()["version"] == 2, session.text()

    # The public chat page now starts sessions on the published v2.
    chat = pages.new()
    chat.goto("/?chat_model=prompt_lab")
    chat.get_by_test_id("chat-input").fill("Hi")
    chat.get_by_test_id("chat-send").click()
    expect(chat.get_by_test_id("chat-reply")).to_have_text(["Hello! What can I help you with?"])
    expect(chat.get_by_test_id("chat-session")).to_contain_text("· v2")
