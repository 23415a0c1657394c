"""Browser tests: Debian's Chromium, driven by Playwright's sync API, against a live daphne of the example project.

One server and one browser for the whole package; every test gets fresh pages (its own browser
context) and starts its own chat. Each page is photographed when its test ends, into
``test-artifacts/`` (git-ignored). Missing Chromium fails the tests: it never skips them.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DAPHNE = Path(sys.executable).with_name("daphne")
CHROMIUM = os.environ.get("CHATMODEL_CHROMIUM", "/usr/bin/chromium")
# Playwright's own browser download does not work here; Debian's Chromium does, with these flags.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 15_000

SETUP = """
import django
django.setup()
from django.core.management import call_command
from chatmodel_app import services
from chatmodel_app.models import ChatModel

call_command("migrate", verbosity=0)
call_command("chatmodel_demo", user="demo", verbosity=0)  # simple_assistant, say_hello_bot and the login demo / demo


def published(name, description, **fields):
    chat_model = ChatModel.objects.create(name=name, description=description)
    version = services.version_create(chat_model=chat_model, system_prompt="You are helpful.", **fields)
    services.version_publish(version=version)


# The admin test edits this one into a new version, publishes it and chats with it.
published("prompt_lab", "A prompt the admin test edits.", model="offline/demo")
# Too small a context window for most messages: the page shows the refusal.
published("tiny_window", "Refuses long messages.", model="offline/demo", context_window=40)
# A provider with no API key here (and a closed loopback port behind it): every run fails at the model.
published("misconfigured", "Its provider refuses every call.", model="openai/gpt-4o-mini", params={"api_base": "http://127.0.0.1:9/v1"})
"""


@dataclass
class Live:
    """The running example site."""

    url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def live(tmp_path_factory) -> Iterator[Live]:
    """The example project under daphne on a fresh SQLite database (migrated, seeded); DEBUG on, as in `make run`."""
    tmp = tmp_path_factory.mktemp("browser-live")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "SQLITE_PATH": str(tmp / "db.sqlite3"),
        "CHATMODEL_OFFLINE_TOKEN_DELAY": "0.02",
        # As in `make run`: Django serves the static files (the page's JS, the admin's CSS).
        "DJANGO_DEBUG": "1",
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        # One user (demo) runs every browser test's chats: more than the example's 30 runs a minute on a fast
        # machine. The throttle itself is tested on every door elsewhere (tests/test_hardening.py).
        "CHATMODEL_RUN_RATE": "1000/minute",
    }
    # The embedded defaults whatever the caller's environment: a temp SQLite file, the in-memory layer,
    # and no provider key for the 'misconfigured' model.
    for name in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    setup = subprocess.run(
        [sys.executable, "-c", SETUP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert setup.returncode == 0, f"seeding the live server failed:\n{setup.stderr}"
    port = _free_port()
    log = tmp / "daphne.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "example_project.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"daphne exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"daphne did not listen within 30 s:\n{log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield Live(url=f"http://127.0.0.1:{port}", log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """Debian's Chromium under Playwright. Its absence is a failure: `make test` installs it (`make browser-deps`)."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `make browser-deps` (apt-get install -y chromium), "
            "or point CHATMODEL_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
def demo_login(live, browser) -> dict:
    """Log in once through the login page with the demo account; later contexts reuse its cookies."""
    from playwright.sync_api import expect

    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live.url + "/")
        expect(page).to_have_url(re.compile(r"/login/\?next=/$"), timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("demo-login-hint")).to_contain_text("demo / demo")
        page.fill("#id_username", "demo")
        page.fill("#id_password", "demo")
        page.get_by_test_id("login-submit").click()
        expect(page).to_have_url(live.url + "/", timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("chat-model-list")).to_be_visible()
        return context.storage_state()
    finally:
        context.close()


@dataclass
class Pages:
    """Opens pages for one test and photographs each when the test ends."""

    new: Callable[..., object]
    errors: list[str]


@pytest.fixture
def pages(request, live, browser, demo_login) -> Iterator[Pages]:
    """``pages.new(logged_in=True)``: a page in a browser context of its own; JS errors on any page fail the test."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    contexts = []
    opened = []
    errors: list[str] = []

    def new(*, logged_in: bool = True, viewport: dict | None = None):
        context = browser.new_context(
            base_url=live.url,
            storage_state=demo_login if logged_in else None,
            viewport=viewport or {"width": 1280, "height": 800},
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        opened.append(page)
        return page

    yield Pages(new=new, errors=errors)

    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    for n, page in enumerate(opened):
        suffix = f"-{n + 1}" if len(opened) > 1 else ""
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"))
        except Exception as exc:  # a screenshot must not hide the test's own outcome
            print(f"screenshot of {name}{suffix} failed: {exc}")
    for context in contexts:
        context.close()
    assert not errors, "JavaScript errors on the page:\n" + "\n".join(errors)
