"""Truncation "summary": what falls out of the window is condensed into a summary the model keeps seeing.

The fake server plays a toy model that can only answer "What is my name?" from what it was sent, and
a toy summariser that keeps "name is X" facts. So these tests prove the mechanism (a dropped fact ->
the summary -> later requests -> the answer), not the quality of any real model's summaries.
"""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async
from django.test.utils import override_settings
from django.urls import reverse
from django.utils.html import escape

from chatmodel_app import ChatModel, services
from chatmodel_app.conf import conf
from chatmodel_app.llm import get_litellm
from chatmodel_app.models import Message, Run, Session
from chatmodel_app.testing import FakeReply
from tests.test_context import assert_tool_safe, insert, session_of

WINDOW = 400
REPLY = 50
SUMMARY_TOKENS = 60
pytestmark = pytest.mark.usefixtures("small_summaries")
_NAME = re.compile(r"name is (\w+)")


@pytest.fixture
def small_summaries():
    with override_settings(CHATMODEL_SUMMARY_MAX_TOKENS=SUMMARY_TOKENS):
        yield


def is_summary_request(body: dict) -> bool:
    return body["messages"][0]["content"] == conf.SUMMARY_PROMPT


def toy_model(body: dict) -> FakeReply:
    """A model that only knows what it is sent: it answers "What is my name?" and summarises names."""
    messages = body["messages"]
    if is_summary_request(body):
        names = _NAME.findall(messages[-1]["content"])
        return FakeReply(content=f"The user's name is {names[-1]}." if names else "Nothing to remember yet.")
    if "What is my name?" in (messages[-1].get("content") or ""):
        names = _NAME.findall(" ".join(m.get("content") or "" for m in messages))
        return FakeReply(content=f"Your name is {names[-1]}." if names else "I don't know your name.")
    return FakeReply(content="Noted.")


@pytest.fixture
def toy(fake_llm):
    fake_llm.default_reply = toy_model
    return fake_llm


def make_model(fake_chat_model, truncation: str = "summary", **fields):
    return fake_chat_model(context_window=WINDOW, params={"max_tokens": REPLY}, truncation=truncation, **fields)


def filler(n: int) -> str:
    return f"Filler {n}: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod."


def count(messages: list[dict]) -> int:
    return get_litellm().token_counter(model="openai/fake-model", messages=messages)


def chat(session: ChatModel, text: str, fake_llm) -> tuple[str, list[dict]]:
    """One user turn; returns the reply and the requests the run made."""
    before = len(fake_llm.requests)
    session.add_messages([{"role": "user", "content": text}])
    response = session.run()
    assert not response.error, response.error_log
    return response.content, [r["body"] for r in fake_llm.requests[before:]]


def conversation(session: ChatModel, fake_llm, turns: int = 24) -> list[list[dict]]:
    """A fact first, then filler; the requests of each run."""
    runs = [chat(session, "Hello! My name is Ada.", fake_llm)[1]]
    runs += [chat(session, filler(n), fake_llm)[1] for n in range(turns)]
    return runs


def test_summary_carries_a_dropped_fact_into_a_later_answer(fake_chat_model, toy):
    make_model(fake_chat_model)
    session = ChatModel("simple_assistant")
    runs = conversation(session, toy)
    answer, requests = chat(session, "What is my name?", toy)
    assert answer == "Your name is Ada."
    main = requests[-1]
    assert not is_summary_request(main)
    # The fact was not sent verbatim: it came through the summary, sent right after the system prompt.
    assert not any("My name is Ada" in (m.get("content") or "") for m in main["messages"])
    assert main["messages"][0]["content"] == "You are a helpful assistant."
    assert main["messages"][1] == {
        "role": "system",
        "content": "Summary of the earlier conversation:\nThe user's name is Ada.",
    }
    # Summaries ran more than once (incrementally: the old summary is the next call's input) ...
    summarised = [run for run in runs if len(run) > 1]
    assert len(summarised) >= 2
    later = [body for run in summarised[1:] for body in run if is_summary_request(body)]
    assert all("Summary so far:\nThe user's name is Ada." in body["messages"][-1]["content"] for body in later)
    # ... but not on every turn: each frees half the window.
    first = next(i for i, run in enumerate(runs) if len(run) > 1)
    assert len(summarised) <= (len(runs) - first) / 2
    # Every request fits: the main ones in the window less the reply, the summary ones likewise.
    for run in [*runs, requests]:
        for body in run:
            limit = WINDOW - (SUMMARY_TOKENS if is_summary_request(body) else REPLY)
            assert count(body["messages"]) <= limit
    stored = Session.objects.get(uuid=session.session_uuid)
    assert stored.summary == "The user's name is Ada."
    last = Run.objects.filter(session=stored).order_by("-created_at").first()
    assert last.used_summary and last.first_seq == stored.summary_until_seq + 1  # no gap after the summary
    assert last.estimated_prompt_tokens <= WINDOW - REPLY and last.prompt_tokens


def test_without_a_summary_the_fact_is_forgotten(fake_chat_model, toy):
    """The control: the same conversation with plain truncation loses the name."""
    make_model(fake_chat_model, truncation="auto")
    session = ChatModel("simple_assistant")
    runs = conversation(session, toy)
    answer, _ = chat(session, "What is my name?", toy)
    assert answer == "I don't know your name."
    assert all(len(run) == 1 for run in runs)
    assert not Run.objects.filter(used_summary=True).exists()


def test_a_long_unsummarised_history_is_condensed_in_bounded_chunks(fake_chat_model, toy):
    make_model(fake_chat_model)
    session = session_of()
    insert(session, [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Noted."}])
    insert(session, [{"role": "user" if i % 2 == 0 else "assistant", "content": filler(i)} for i in range(400)])
    insert(session, [{"role": "user", "content": "What is my name?"}])
    response = services.run(session=session)
    assert not response.error, response.error_log
    summaries = [r["body"] for r in toy.requests if is_summary_request(r["body"])]
    # At most four summary calls in one run, each within the summary model's window.
    assert 1 <= len(summaries) <= 4
    assert all(count(body["messages"]) <= WINDOW - SUMMARY_TOKENS for body in summaries)
    assert all(body["max_tokens"] == SUMMARY_TOKENS for body in summaries)
    session.refresh_from_db()
    run = Run.objects.get()
    assert run.used_summary and run.first_seq == session.summary_until_seq + 1
    # The fact is 400 messages back, beyond four chunks: the summary covers the newest dropped part only.
    assert response.content == "I don't know your name."
    assert run.estimated_prompt_tokens <= WINDOW - REPLY


def test_a_message_bigger_than_the_summary_window_is_cut_for_the_summary(fake_chat_model, toy):
    make_model(fake_chat_model)
    session = session_of()
    insert(session, [{"role": "user", "content": "My name is Ada. " + "Very long story. " * 400}])
    insert(session, [{"role": "user" if i % 2 else "assistant", "content": filler(i)} for i in range(10)])
    insert(session, [{"role": "user", "content": "What is my name?"}])
    response = services.run(session=session)
    assert not response.error and response.content == "Your name is Ada."
    summaries = [r["body"] for r in toy.requests if is_summary_request(r["body"])]
    assert summaries and all(count(body["messages"]) <= WINDOW - SUMMARY_TOKENS for body in summaries)
    assert any("[...]" in body["messages"][-1]["content"] for body in summaries)


def test_a_failed_summary_falls_back_to_plain_truncation_and_is_retried(fake_chat_model, toy):
    make_model(fake_chat_model)
    session = session_of()
    insert(session, [{"role": "user" if i % 2 == 0 else "assistant", "content": filler(i)} for i in range(40)])
    insert(session, [{"role": "user", "content": "My name is Ada."}])
    toy.enqueue(FakeReply(fault="500"))  # the summary call fails
    response = services.run(session=session)
    assert not response.error and response.content == "Noted."
    run = Run.objects.get()
    assert run.status == Run.Status.COMPLETED and not run.used_summary
    assert run.error_log.startswith("summary_failed:") and "plain truncation" in run.error_log
    main = toy.last_request["body"]
    assert not any(m["content"].startswith("Summary of") for m in main["messages"][1:])
    assert count(main["messages"]) <= WINDOW - REPLY
    session.refresh_from_db()
    assert session.summary == "" and session.summary_until_seq is None
    # The next run tries again, and succeeds.
    insert(session, [{"role": "user", "content": "And now?"}])
    assert not services.run(session=session).error
    session.refresh_from_db()
    assert session.summary == "Nothing to remember yet." and session.summary_until_seq
    assert Run.objects.order_by("-created_at").first().used_summary


def test_summary_model_setting_and_version_field(fake_chat_model, toy, monkeypatch, settings):
    # Another model has no api_base of the version's: it reaches the fake server through the environment.
    monkeypatch.setenv("OPENAI_API_BASE", toy.url)
    settings.CHATMODEL_SUMMARY_MODEL = "openai/fake-summariser"
    make_model(fake_chat_model)
    make_model(fake_chat_model, name="other", summary_model="openai/version-summariser")
    for name, expected in (("simple_assistant", "fake-summariser"), ("other", "version-summariser")):
        session = session_of(name)
        insert(session, [{"role": "user" if i % 2 == 0 else "assistant", "content": filler(i)} for i in range(40)])
        insert(session, [{"role": "user", "content": "hi"}])
        before = len(toy.requests)
        assert not services.run(session=session).error
        bodies = [r["body"] for r in toy.requests[before:]]
        assert [b["model"] for b in bodies if is_summary_request(b)][:1] == [expected]
        assert bodies[-1]["model"] == "fake-model"


def test_summary_keeps_tool_calls_with_their_results(fake_chat_model, toy):
    make_model(fake_chat_model)
    session = session_of()
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    rows = []
    for i in range(30):
        rows += [
            {"role": "user", "content": filler(i)},
            {"role": "assistant", "content": None, "tool_calls": [{**call, "id": f"c{i}"}]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": f"{i} degrees"},
            {"role": "assistant", "content": "Noted."},
        ]
    insert(session, [*rows, {"role": "user", "content": "and?"}])
    assert not services.run(session=session).error
    summary_input = next(r["body"] for r in toy.requests if is_summary_request(r["body"]))["messages"][-1]["content"]
    assert 'assistant called get_weather({"city": "Oslo"})' in summary_input
    assert_tool_safe(toy.last_request["body"]["messages"][2:])


def test_summary_is_in_message_logs_and_the_admin(fake_chat_model, toy, admin_client):
    make_model(fake_chat_model)
    session = ChatModel("simple_assistant")
    chat(session, "hi", toy)
    logs = session.get_config().message_logs
    assert all(m.get("name") != "summary" for m in logs)
    conversation(session, toy, turns=14)
    stored = Session.objects.get(uuid=session.session_uuid)
    assert stored.summary
    logs = session.get_config().message_logs
    assert logs[0] == {
        "role": "system",
        "name": "summary",
        "content": stored.summary,
        "summary_until_seq": stored.summary_until_seq,
    }
    assert len(logs) == Message.objects.filter(session=stored).count() + 1
    assert logs[1] == {"role": "user", "content": "hi"}  # message_logs still hold every message
    page = admin_client.get(reverse("admin:chatmodel_app_session_change", args=[stored.pk]))
    assert page.status_code == 200 and escape(stored.summary) in page.content.decode()


def test_streamed_runs_use_the_summary_too(fake_chat_model, toy):
    make_model(fake_chat_model)
    session = session_of()
    insert(session, [{"role": "user", "content": "My name is Ada."}])
    insert(session, [{"role": "user" if i % 2 else "assistant", "content": filler(i)} for i in range(16)])
    insert(session, [{"role": "user", "content": "What is my name?"}])
    chunks = list(services.run_stream(session=session))
    assert chunks[-1].is_final and not chunks[-1].error
    assert "".join(c.content or "" for c in chunks) == "Your name is Ada."
    assert Run.objects.get().used_summary


@pytest.mark.django_db(transaction=True)
async def test_arun_uses_the_summary(fake_chat_model, toy):
    await sync_to_async(make_model)(fake_chat_model)
    session = await sync_to_async(session_of)()

    def history():
        insert(session, [{"role": "user", "content": "My name is Ada."}])
        insert(session, [{"role": "user" if i % 2 else "assistant", "content": filler(i)} for i in range(16)])
        insert(session, [{"role": "user", "content": "What is my name?"}])

    await sync_to_async(history)()
    response = await services.arun(session=session)
    assert not response.error and response.content == "Your name is Ada."
    run = await Run.objects.aget(session=session)
    assert run.used_summary
