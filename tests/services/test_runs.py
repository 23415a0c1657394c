"""Run semantics: storage, one run per session, leases, cancel, version pinning, A/B, signals, tool calls."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from chatmodel_app import ChatModel
from chatmodel_app.exceptions import InvalidMessages, SessionBusy
from chatmodel_app.models import Message, Run, Session, Version
from chatmodel_app.services import run_cancel, version_create
from chatmodel_app.signals import run_finished
from chatmodel_app.testing import FakeReply


def roles(session: ChatModel) -> list[str]:
    return list(
        Message.objects.filter(session__uuid=session.session_uuid).order_by("seq").values_list("role", flat=True)
    )


def seqs(session: ChatModel) -> list[int]:
    return list(
        Message.objects.filter(session__uuid=session.session_uuid).order_by("seq").values_list("seq", flat=True)
    )


def in_thread(fn, *args, **kwargs):
    """Run fn in a thread with its own database connection; return (thread, result holder)."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_run_records_everything(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    res = session.run(temperature=0.2)
    run = Run.objects.get(uuid=res.run_uuid)
    assert run.status == Run.Status.COMPLETED and run.model == "offline/demo"
    assert run.prompt_tokens > 0 and run.completion_tokens > 0 and run.cost == 0.0
    assert run.latency_ms is not None and run.finished_at is not None
    assert (run.first_seq, run.last_seq, run.message_count) == (1, 1, 1)
    assert run.params == {"temperature": 0.2}
    message = Message.objects.get(pk=res.message_id)
    assert message.run == run and message.seq == 2 and message.token_count > 0
    assert res.usage == {
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "total_tokens": run.prompt_tokens + run.completion_tokens,
    }
    assert res.version == 1 and res.session_uuid == session.session_uuid and res.status == "completed"


def test_cost_where_litellm_knows_the_price(make_chat_model, fake_llm, fake_key):
    make_chat_model(model="openai/gpt-4o-mini", params={"api_base": fake_llm.url})
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    fake_llm.enqueue(FakeReply(content="Hi there", prompt_tokens=1000, completion_tokens=1000))
    res = session.run()
    assert not res.error, res.error_log
    assert res.cost and res.cost > 0
    assert Run.objects.get(uuid=res.run_uuid).cost == pytest.approx(res.cost)


def test_stream_records_time_to_first_token(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    fake_llm.enqueue(FakeReply(content="one two three"))
    final = list(session.run(stream=True))[-1]
    run = Run.objects.get(uuid=final.run_uuid)
    assert run.stream and run.time_to_first_token_ms is not None
    assert run.time_to_first_token_ms <= run.latency_ms
    assert run.prompt_tokens and run.completion_tokens


def test_request_sent_to_provider(fake_chat_model, fake_llm):
    fake_chat_model(system_prompt="Be brief.", params={"temperature": 0.1, "max_tokens": 50})
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    session.run(top_p=0.5)
    request = fake_llm.last_request
    body = request["body"]
    assert body["model"] == "fake-model"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.1, 50, 0.5)
    assert request["headers"]["authorization"] == "Bearer sk-fake-test-key-0123456789"
    assert "api_base" not in body and "context_window" not in body


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_on_one_session(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    fake_llm.enqueue(FakeReply(content="slow answer", delay=1.0))
    first, box = in_thread(ChatModel("simple_assistant", session.session_uuid).run)
    assert wait_for(lambda: Run.objects.filter(status=Run.Status.IN_PROGRESS).exists())
    second = ChatModel("simple_assistant", session.session_uuid).run()
    first.join(10)
    assert second.error and second.error_code == "session_busy" and "busy" in second.error_log
    assert not box["result"].error and box["result"].content == "slow answer"
    assert roles(session) == ["user", "assistant"]
    assert Run.objects.count() == 1  # the refused run never began


@pytest.mark.django_db(transaction=True)
def test_add_messages_while_a_run_is_active_is_refused(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "first"}])
    fake_llm.enqueue(FakeReply(content="answer to first", delay=0.8))
    thread, box = in_thread(ChatModel("simple_assistant", session.session_uuid).run)
    assert wait_for(lambda: Run.objects.filter(status=Run.Status.IN_PROGRESS).exists())
    with pytest.raises(SessionBusy, match="busy"):
        session.add_messages([{"role": "user", "content": "second"}])
    thread.join(10)
    session.add_messages([{"role": "user", "content": "second"}])
    contents = list(Message.objects.filter(session__uuid=session.session_uuid).values_list("content", flat=True))
    assert contents == ["first", "answer to first", "second"]
    assert seqs(session) == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_concurrent_add_messages_keep_a_gapless_seq(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "start"}])
    threads = [
        in_thread(
            ChatModel("simple_assistant", session.session_uuid).add_messages,
            [{"role": "user", "content": f"m{i}-{j}"} for j in range(3)],
        )
        for i in range(8)
    ]
    for thread, box in threads:
        thread.join(30)
        assert "error" not in box, box.get("error")
    stored = list(Message.objects.filter(session__uuid=session.session_uuid).order_by("seq"))
    assert [m.seq for m in stored] == list(range(1, 26))
    # Each call's messages stay together and in order.
    for i in range(8):
        positions = [m.seq for m in stored if m.content.startswith(f"m{i}-")]
        assert positions == list(range(positions[0], positions[0] + 3))


def test_expired_lease_frees_the_session(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello"}])
    row = Session.objects.get(uuid=session.session_uuid)
    dead = Run.objects.create(session=row, version=row.version, model="offline/demo")
    # A worker claimed the session and died: its lease is still running.
    Session.objects.filter(pk=row.pk).update(
        active_run_uuid=dead.uuid, lease_expires_at=timezone.now() + timedelta(seconds=60)
    )
    assert session.run().error_code == "session_busy"
    Session.objects.filter(pk=row.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    res = session.run()
    assert not res.error, res.error_log
    dead.refresh_from_db()
    assert dead.status == Run.Status.FAILED and dead.error == "lease_expired"
    assert roles(session) == ["user", "assistant"]


def test_seed_retry_loop_leaves_a_clean_history(fake_chat_model, fake_llm):
    fake_chat_model()
    for _ in range(2):
        fake_llm.enqueue(FakeReply(fault="500"))
    session = ChatModel("simple_assistant")
    for _attempt in range(3):
        session.add_messages([{"role": "user", "content": "What's new?"}])
        res = session.run()
        if not res.error:
            break
    assert not res.error
    assert roles(session) == ["user", "assistant"]
    assert Run.objects.filter(status=Run.Status.FAILED).count() == 2
    # The model saw the user's message once.
    assert fake_llm.last_request["body"]["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What's new?"},
    ]


def test_repeated_messages_without_a_failed_run_are_kept(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "yes"}])
    session.add_messages([{"role": "user", "content": "yes"}])
    assert roles(session) == ["user", "user"]
    assert not session.run().error
    session.add_messages([{"role": "user", "content": "yes"}])
    assert roles(session) == ["user", "user", "assistant", "user"]


def test_cancel_keeps_what_was_generated(fake_chat_model, fake_llm):
    fake_chat_model()
    fake_llm.token_delay = 0.05
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Tell me a story"}])
    fake_llm.enqueue(FakeReply(content=" ".join(f"w{i}" for i in range(40))))
    chunks = []
    for chunk in session.run(stream=True):
        chunks.append(chunk)
        if len(chunks) == 3:
            run_cancel(session=Session.objects.get(uuid=session.session_uuid))
    final = chunks[-1]
    assert final.is_final and not final.error and final.status == "cancelled"
    text = "".join(c.content for c in chunks)
    assert 0 < len(text.split()) < 40
    stored = Message.objects.get(pk=final.message_id)
    assert stored.content == text and stored.metadata == {"cancelled": True}
    assert Run.objects.get(uuid=final.run_uuid).status == Run.Status.CANCELLED
    assert not session.run().error  # the session is free


def test_abandoned_stream_is_stored_as_cancelled(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Tell me a story"}])
    fake_llm.enqueue(FakeReply(content="one two three four five six"))
    stream = session.run(stream=True)
    first = next(stream)
    stream.close()
    run = Run.objects.get(uuid=first.run_uuid)
    assert run.status == Run.Status.CANCELLED
    assert Message.objects.get(run=run).content.startswith("one")
    assert Session.objects.get(uuid=session.session_uuid).active_run_uuid is None


def test_cancel_with_no_active_run(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hi"}])
    assert run_cancel(session=Session.objects.get(uuid=session.session_uuid)) is None


def test_session_is_pinned_to_its_version(make_chat_model):
    chat_model = make_chat_model(system_prompt="Version one.")
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hi"}])
    assert session.run().version == 1
    v2 = version_create(chat_model=chat_model, system_prompt="Version two.", model="offline/demo")
    Version.objects.filter(chat_model=chat_model).update(is_published=False)
    Version.objects.filter(pk=v2.pk).update(is_published=True)
    session.add_messages([{"role": "user", "content": "again"}])
    assert session.run().version == 1
    assert ChatModel("simple_assistant", session.session_uuid).get_config().system_prompt == "Version one."
    assert ChatModel("simple_assistant").get_config().system_prompt == "Version two."


def test_version_latest_and_number(make_chat_model):
    chat_model = make_chat_model(system_prompt="one")
    version_create(chat_model=chat_model, system_prompt="two", model="offline/demo")
    assert ChatModel("simple_assistant", version="latest").get_config().system_prompt == "two"
    assert ChatModel("simple_assistant", version=1).get_config().system_prompt == "one"
    assert ChatModel("simple_assistant").get_config().system_prompt == "one"  # the published one
    res = ChatModel("simple_assistant", version=7).run()
    assert res.error and res.error_code == "version_not_found" and "version 7" in res.error_log


def test_deploy_picks_published_versions_by_ratio(make_chat_model):
    chat_model = make_chat_model(system_prompt="A", ratio=3.0)
    v2 = version_create(chat_model=chat_model, system_prompt="B", model="offline/demo")
    Version.objects.filter(pk=v2.pk).update(is_published=True, ratio=1.0)
    random.seed(7)
    picks = [ChatModel("simple_assistant").get_config().system_prompt for _ in range(400)]
    share = picks.count("A") / len(picks)
    assert 0.68 < share < 0.82  # 3:1
    Version.objects.filter(pk=v2.pk).update(ratio=0.0)
    assert {ChatModel("simple_assistant").get_config().system_prompt for _ in range(50)} == {"A"}


def test_get_config_and_first_run_agree_on_the_version(make_chat_model):
    chat_model = make_chat_model(system_prompt="A")
    v2 = version_create(chat_model=chat_model, system_prompt="B", model="offline/demo")
    Version.objects.filter(pk=v2.pk).update(is_published=True)
    for _ in range(20):
        session = ChatModel("simple_assistant")
        config = session.get_config()
        session.add_messages([{"role": "user", "content": "hi"}])
        assert session.run().version_uuid == config.version_uuid


def test_session_of_another_chat_model(make_chat_model):
    make_chat_model("one")
    make_chat_model("two")
    session = ChatModel("one")
    session.add_messages([{"role": "user", "content": "hi"}])
    res = ChatModel("two", session.session_uuid).run()
    assert res.error and res.error_code == "session_not_found" and "another chat model" in res.error_log


def test_new_chat_model_has_a_session_uuid_before_any_write(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    assert uuid.UUID(session.session_uuid)
    session.get_config()
    assert not Session.objects.exists()
    session.add_messages([{"role": "user", "content": "hi"}])
    assert Session.objects.get().uuid == uuid.UUID(session.session_uuid)


def test_run_finished_signal(make_chat_model):
    make_chat_model()
    received = []

    def listener(sender, run, response, **kwargs):
        received.append((run.status, response.content, response.error))

    run_finished.connect(listener)
    try:
        session = ChatModel("simple_assistant")
        session.add_messages([{"role": "user", "content": "hi"}])
        session.run()
        list(session.run(stream=True))  # a second reply to the same turn, streamed
    finally:
        run_finished.disconnect(listener)
    assert [r[0] for r in received] == ["completed", "completed"]
    assert received[0][1] == "Hello! What can I help you with?"


def test_parallel_tool_calls_round_trip(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Weather in Boston and Paris?"}])
    fake_llm.enqueue(
        FakeReply(
            tool_calls=[
                {"name": "get_weather", "arguments": {"location": "Boston"}},
                {"name": "get_weather", "arguments": {"location": "Paris"}},
            ]
        )
    )
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}
    res = session.run(tools=[{"type": "function", "function": weather}])
    assert [c.args["location"] for c in res.tool_calls] == ["Boston", "Paris"]
    assert res.function_call.name == "get_weather"
    stored = session.add_messages(
        [{"role": "function", "content": "13 degrees"}, {"role": "tool", "content": "18 degrees"}]
    )
    assert [m["tool_call_id"] for m in stored] == [c.id for c in res.tool_calls]
    fake_llm.enqueue(FakeReply(content="Boston 13, Paris 18."))
    assert session.run().content == "Boston 13, Paris 18."
    sent = fake_llm.last_request["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
    assert [t["id"] for t in sent[2]["tool_calls"]] == [sent[3]["tool_call_id"], sent[4]["tool_call_id"]]


def test_streamed_tool_calls(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Weather in Boston?"}])
    fake_llm.enqueue(FakeReply(tool_calls=[{"name": "get_weather", "arguments": {"location": "Boston"}}]))
    weather = {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}
    chunks = list(session.run(stream=True, functions=[weather]))
    assert any(c.tool_call_deltas for c in chunks[:-1])
    assert dict(chunks[-1].function_call) == {"name": "get_weather", "args": {"location": "Boston"}}
    assert Message.objects.get(pk=chunks[-1].message_id).tool_calls[0]["function"]["name"] == "get_weather"


def test_legacy_function_call_reply_round_trips(fake_chat_model, fake_llm):
    fake_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Weather in Boston?"}])
    fake_llm.enqueue(FakeReply(function_call={"name": "get_weather", "arguments": {"location": "Boston"}}))
    res = session.run()
    assert dict(res.function_call) == {"name": "get_weather", "args": {"location": "Boston"}}
    session.add_messages([{"role": "function", "content": "13 degrees celsius"}])
    session.run()
    sent = fake_llm.last_request["body"]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == sent[-1]["tool_call_id"]


def test_function_result_with_nothing_to_answer_is_refused(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "hi"}])
    with pytest.raises(InvalidMessages, match="no function call is waiting"):
        session.add_messages([{"role": "function", "content": "13 degrees"}])
    assert roles(session) == ["user"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_nul_in_the_model_reply_is_stored_as_a_replacement_character(fake_chat_model, fake_llm, stream):
    # PostgreSQL cannot store U+0000: the reply is kept with U+FFFD instead of failing (and losing a paid reply).
    fake_chat_model()
    fake_llm.enqueue(FakeReply(content="a\x00b"))
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hi"}])
    res = list(session.run(stream=True))[-1] if stream else session.run()
    assert not res.error, res.error_log
    stored = Message.objects.get(session__uuid=session.session_uuid, role="assistant")
    assert stored.content == "a\ufffdb"
    assert Run.objects.get(uuid=res.run_uuid).status == Run.Status.COMPLETED
