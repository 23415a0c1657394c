"""Prompt variables in a real Chromium: declare them in the version editor, then the playground asks for values."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

PROMPT = "You help {{ customer_name }} in a {{ tone }} tone."
VARIABLES = json.dumps(
    [{"name": "customer_name", "required": True, "description": "Who we help"}, {"name": "tone", "default": "warm"}]
)


def test_declare_variables_then_the_playground_asks_for_their_values(pages):
    page = pages.new()
    # A chat model of this test's own, so other tests' chat models keep their version numbers.
    page.goto("/admin/chatmodel_app/chatmodel/add/")
    page.fill("#id_name", "variables_lab")
    page.locator("input[name=_continue]").click()
    page.get_by_test_id("add-version").click()

    # An undeclared placeholder is refused by the editor, naming it.
    page.fill("#id_system_prompt", PROMPT)
    page.fill("#id_variables", '[{"name": "customer_name", "required": true}]')
    page.locator("input[name=_save]").click()
    expect(page.locator(".errorlist")).to_contain_text("uses {{ tone }}, which is not declared")

    page.fill("#id_variables", VARIABLES)
    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    page.get_by_test_id("open-playground").click()

    # The start form asks for each value: the required one marked, the default filled in.
    fields = page.get_by_test_id("playground-variables")
    expect(fields).to_contain_text("customer_name")
    expect(fields).to_contain_text("Who we help")
    expect(page.locator("[data-testid=playground-variable][data-name=tone]")).to_have_value("warm")
    page.locator("[data-testid=playground-variable][data-name=customer_name]").fill("Ada Lovelace")
    page.get_by_test_id("playground-new").click()

    # The session's system prompt, as its runs send it.
    expect(page.get_by_test_id("playground-rendered-prompt")).to_have_text("You help Ada Lovelace in a warm tone.")
    expect(page.locator("#playground-status")).to_have_attribute("data-status", "idle")
    page.locator("#playground-input").fill("Hello there")
    page.locator("#playground-send").click()
    turn = page.get_by_test_id("playground-turn").last
    expect(turn.get_by_test_id("playground-reply")).to_have_text("Hello! What can I help you with?")
    session_uuid = page.evaluate("window.chatmodelPlayground.sessionUuid")
    session = page.request.get(f"/api/sessions/{session_uuid}/")
    assert session.ok, session.text()
    assert session.json()["variables"] == {"customer_name": "Ada Lovelace", "tone": "warm"}
    # "New conversation" offers this session's values again.
    expect(page.locator("[data-testid=playground-variable][data-name=customer_name]")).to_have_value(
        re.compile("^Ada Lovelace$")
    )
