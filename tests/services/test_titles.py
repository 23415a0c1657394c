"""Conversation titles: made after the first exchange, never over the user's, never failing a run."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User

from chatmodel_app import ChatModel
from chatmodel_app.models import Session
from chatmodel_app.services import titles
from chatmodel_app.testing import FakeReply

pytestmark = pytest.mark.django_db


def _chat(name="simple_assistant", text="plan a trip to Lisbon in May, please!", **kwargs):
    session = ChatModel(name, **kwargs)
    session.add_messages([{"role": "user", "content": text}])
    return session


def test_the_offline_model_titles_the_first_exchange_deterministically(make_chat_model):
    make_chat_model()
    first, second = _chat(), _chat()
    assert not first.run().error and not second.run().error
    for session in (first, second):
        info = session.get_session()
        assert info["title"] == "Plan a trip to Lisbon in"
        assert info["title_source"] == "auto"


def test_later_runs_keep_the_first_title(make_chat_model):
    make_chat_model()
    session = _chat()
    session.run()
    session.add_messages([{"role": "user", "content": "something else entirely"}])
    session.run()
    assert session.get_session()["title"] == "Plan a trip to Lisbon in"


def test_a_title_the_user_set_is_never_replaced(make_chat_model):
    make_chat_model()
    session = _chat()
    session.rename("My trip")
    assert not session.run().error
    info = session.get_session()
    assert (info["title"], info["title_source"]) == ("My trip", "user")


def test_no_title_is_made_when_titles_are_off(make_chat_model, settings):
    settings.CHATMODEL_TITLE_MODEL = None
    make_chat_model()
    session = _chat()
    assert not session.run().error
    assert session.get_session()["title"] == ""


def test_a_failed_run_makes_no_title(fake_chat_model, fake_llm, settings):
    settings.CHATMODEL_NUM_RETRIES = 0
    fake_chat_model()
    fake_llm.enqueue(FakeReply(fault="500"))
    session = _chat()
    assert session.run().error
    assert session.get_session()["title"] == ""


def test_a_real_title_model_is_asked_once_with_a_short_call(fake_chat_model, fake_llm, settings):
    settings.CHATMODEL_TITLE_MODEL = ""  # the version's own model: the fake server
    settings.CHATMODEL_TITLE_BACKGROUND = False  # inline, so the test sees it at once
    fake_chat_model()
    fake_llm.enqueue(FakeReply(content="Lisbon is lovely in May."))
    fake_llm.enqueue(FakeReply(content='Title: "Planning a Lisbon trip."'))
    session = _chat()
    assert session.run().content == "Lisbon is lovely in May."
    info = session.get_session()
    assert (info["title"], info["title_source"]) == ("Planning a Lisbon trip", "auto")
    title_request = fake_llm.requests[-1]["body"]
    assert title_request["max_tokens"] == titles.TITLE_MAX_TOKENS
    assert "Lisbon is lovely in May." in title_request["messages"][-1]["content"]
    session.add_messages([{"role": "user", "content": "and June?"}])
    session.run()
    assert len(fake_llm.requests) == 3  # two replies, one title call


def test_a_failing_title_model_never_fails_the_run_nor_leaks_the_key(fake_chat_model, fake_llm, settings, caplog):
    settings.CHATMODEL_TITLE_MODEL = ""
    settings.CHATMODEL_TITLE_BACKGROUND = False
    fake_chat_model()
    fake_llm.enqueue(FakeReply(content="Sure."))
    fake_llm.enqueue(FakeReply(fault="401_echo"))  # an error text that repeats the key the client sent
    session = _chat()
    with caplog.at_level(logging.WARNING, logger="chatmodel_app"):
        response = session.run()
    assert not response.error and response.content == "Sure."
    info = session.get_session()
    # The offline title stands in for the failed call.
    assert (info["title"], info["title_source"]) == ("Plan a trip to Lisbon in", "auto")
    assert "title model" in caplog.text
    from tests.conftest import FAKE_KEY

    assert FAKE_KEY not in caplog.text and FAKE_KEY not in info["title"]


@pytest.mark.django_db(transaction=True)
def test_a_real_title_model_runs_in_the_background_after_the_reply(fake_chat_model, fake_llm, settings):
    import time

    settings.CHATMODEL_TITLE_MODEL = ""
    fake_chat_model()
    fake_llm.enqueue(FakeReply(content="Sure."))
    fake_llm.enqueue(FakeReply(content="Lisbon in May", delay=0.3))
    session = _chat()
    started = time.monotonic()
    assert session.run().content == "Sure."
    assert time.monotonic() - started < 0.3 + 0.25  # the reply did not wait for the title call
    deadline = time.monotonic() + 10
    while Session.objects.get(uuid=session.session_uuid).title_source != "auto":
        assert time.monotonic() < deadline, "no title within 10 s"
        time.sleep(0.05)
    assert Session.objects.get(uuid=session.session_uuid).title == "Lisbon in May"


def test_title_cleaning():
    assert titles.clean_model_title('"Trip planning."\nmore') == "Trip planning"
    assert titles.clean_model_title("Title: **Budget**") == "Budget"
    assert len(titles.clean_model_title("word " * 100)) <= titles.TITLE_MAX_CHARS + 1
    assert titles.offline_title("   ") == "New chat"
    assert titles.offline_title("hello!") == "Hello"


def test_a_user_title_set_while_a_title_is_made_wins(make_chat_model):
    chat_model = make_chat_model()
    user = User.objects.create_user("alice")
    from chatmodel_app import services
    from chatmodel_app.services import conversations

    session = services.session_create(chat_model=chat_model, user=user)
    services.messages_add(session=session, messages=[{"role": "user", "content": "hi there"}])
    Session.objects.filter(pk=session.pk).update(title_source="pending")  # a title call is under way
    conversations.conversation_update(session=session, title="Mine")
    assert titles.title_generate(session_id=session.pk, model="offline/demo") is None
    session.refresh_from_db()
    assert (session.title, session.title_source) == ("Mine", "user")
