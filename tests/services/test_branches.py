"""Branches: regenerate, edit, switch, fork; the path a run sees; concurrency with an active run."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from chatmodel_app import selectors
from chatmodel_app.context import paths
from chatmodel_app.exceptions import InvalidParams, MessageNotFound, SessionBusy
from chatmodel_app.models import Message, Session
from chatmodel_app.services import leases, messages_add, run, run_stream, session_create
from chatmodel_app.services.branches import (
    branch_switch,
    message_alternatives,
    message_edit,
    regenerate_prepare,
    session_fork,
)
from chatmodel_app.testing import FakeReply

LONG = " ".join(f"w{i}" for i in range(60))


def _path(session: Session) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in selectors.session_messages(session=session)]


def _sent(request: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request["body"]["messages"] if m["role"] != "system"]


@pytest.fixture
def chat(fake_chat_model, fake_llm):
    chat_model = fake_chat_model()
    session = session_create(chat_model=chat_model, version="latest")
    fake_llm.enqueue(FakeReply(content="A1"))
    messages_add(session=session, messages=[{"role": "user", "content": "Q1"}])
    assert run(session=session).content == "A1"
    fake_llm.enqueue(FakeReply(content="A2"))
    messages_add(session=session, messages=[{"role": "user", "content": "Q2"}])
    assert run(session=session).content == "A2"
    return session


def test_regenerate_keeps_the_old_reply_as_an_alternative(chat, fake_llm):
    fake_llm.enqueue(FakeReply(content="A2 again"))
    regenerate_prepare(session=chat)
    res = run(session=chat)
    assert res.content == "A2 again"
    # The model saw the path without the old reply.
    assert _sent(fake_llm.last_request) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2")]
    assert _path(chat) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2 again")]
    # seq stays gapless storage order: 5 messages stored, 1..5.
    assert list(Message.objects.filter(session=chat).order_by("seq").values_list("seq", flat=True)) == [1, 2, 3, 4, 5]
    msgs = list(selectors.session_messages(session=chat))
    alts = message_alternatives(session=chat, messages=msgs)
    assert alts == {5: {"index": 1, "count": 2}}

    # Regenerating again adds a third sibling (not a nested branch).
    fake_llm.enqueue(FakeReply(content="A2 third"))
    regenerate_prepare(session=chat)
    run(session=chat)
    msgs = list(selectors.session_messages(session=chat))
    assert message_alternatives(session=chat, messages=msgs) == {6: {"index": 2, "count": 3}}

    # Switching back to the first shows the original reply.
    branch_switch(session=chat, seq=6, index=0)
    assert _path(chat)[-1] == ("assistant", "A2")
    msgs = list(selectors.session_messages(session=chat))
    assert message_alternatives(session=chat, messages=msgs) == {4: {"index": 0, "count": 3}}
    branch_switch(session=chat, seq=4, index=1)
    assert _path(chat)[-1] == ("assistant", "A2 again")


def test_edit_continues_on_a_new_branch_and_runs_see_only_the_path(chat, fake_llm):
    edited = message_edit(session=chat, seq=1, content="Q1 edited")
    assert edited.seq == 5 and edited.role == "user"
    fake_llm.enqueue(FakeReply(content="B1"))
    assert run(session=chat).content == "B1"
    assert _sent(fake_llm.last_request) == [("user", "Q1 edited")]
    assert _path(chat) == [("user", "Q1 edited"), ("assistant", "B1")]
    # Continue on the new branch: the run sees only it.
    messages_add(session=chat, messages=[{"role": "user", "content": "Q2b"}])
    fake_llm.enqueue(FakeReply(content="B2"))
    run(session=chat)
    assert _sent(fake_llm.last_request) == [("user", "Q1 edited"), ("assistant", "B1"), ("user", "Q2b")]

    # Back to the original: the whole old conversation returns; a new message continues it.
    branch_switch(session=chat, seq=5, index=0)
    assert _path(chat) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2")]
    messages_add(session=chat, messages=[{"role": "user", "content": "Q3"}])
    fake_llm.enqueue(FakeReply(content="A3"))
    run(session=chat)
    assert _sent(fake_llm.last_request) == [
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("assistant", "A2"),
        ("user", "Q3"),
    ]
    # And switching to the edit comes back to where that branch was left.
    branch_switch(session=chat, seq=1, index=1)
    assert _path(chat)[-1] == ("assistant", "B2")
    config = selectors.config_build(version=chat.version, session=chat)
    assert [m["content"] for m in config.message_logs] == ["Q1 edited", "B1", "Q2b", "B2"]


def test_edit_of_a_later_message_keeps_what_came_before(chat, fake_llm):
    message_edit(session=chat, seq=3, content="Q2 edited")
    fake_llm.enqueue(FakeReply(content="C"))
    run(session=chat)
    assert _sent(fake_llm.last_request) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2 edited")]
    msgs = list(selectors.session_messages(session=chat))
    assert message_alternatives(session=chat, messages=msgs) == {5: {"index": 1, "count": 2}}
    # Edit the edited message again: a third sibling at the same place.
    message_edit(session=chat, seq=5, content="Q2 third")
    msgs = list(selectors.session_messages(session=chat))
    assert [m.content for m in msgs] == ["Q1", "A1", "Q2 third"]
    assert message_alternatives(session=chat, messages=msgs) == {7: {"index": 2, "count": 3}}


def test_bad_requests(chat):
    with pytest.raises(InvalidParams):
        message_edit(session=chat, seq=2, content="not a user message")
    with pytest.raises(MessageNotFound):
        message_edit(session=chat, seq=99, content="x")
    with pytest.raises(InvalidParams):
        branch_switch(session=chat, seq=4, index=1)  # no alternatives yet
    message_edit(session=chat, seq=3, content="other")
    with pytest.raises(MessageNotFound):
        branch_switch(session=chat, seq=4, index=0)  # not on the current path any more


def test_fork_copies_the_path_into_a_new_session(chat, fake_llm):
    message_edit(session=chat, seq=3, content="Q2 edited")
    fake_llm.enqueue(FakeReply(content="C"))
    run(session=chat)
    new = session_fork(session=chat, seq=5)
    assert new.uuid != chat.uuid and new.version_id == chat.version_id
    assert _path(new) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2 edited")]
    assert list(Message.objects.filter(session=new).values_list("seq", "branch")) == [(1, 0), (2, 0), (3, 0)]
    fake_llm.enqueue(FakeReply(content="forked"))
    assert run(session=new).content == "forked"
    assert _sent(fake_llm.last_request) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2 edited")]
    assert _path(chat)[-1] == ("assistant", "C")  # the original is untouched


def test_failed_regenerate_gives_the_old_reply_back(chat, fake_llm):
    fake_llm.enqueue(FakeReply(fault="500"))
    regenerate_prepare(session=chat)
    res = run(session=chat)
    assert res.error
    assert _path(chat)[-1] == ("assistant", "A2")
    assert Session.objects.get(pk=chat.pk).branches == []


def test_paged_path_reads_are_bounded(chat, fake_llm):
    """A path read is one query of per-branch ranges, each at most a window deep."""
    message_edit(session=chat, seq=3, content="Q2 edited")
    session = Session.objects.get(pk=chat.pk)
    sql, params = paths.newest_first(Message.objects.filter(session=session), session, columns=("seq",), size=2)
    assert sql.count("LIMIT 2") == 3  # each of the two ranges, and the whole
    rows, more = selectors.message_page(session=session, limit=2, order="desc")
    assert [m.content for m in rows] == ["Q2 edited", "A1"] and more
    rows, more = selectors.message_page(session=session, limit=10)
    assert [m.content for m in rows] == ["Q1", "A1", "Q2 edited"] and not more


# --- concurrency with an active run ---------------------------------------------------------------------


@pytest.fixture
def busy(make_chat_model, settings):
    settings.CHATMODEL_OFFLINE_TOKEN_DELAY = 0.02
    chat_model = make_chat_model(double_texting="reject", double_texting_allowed=["interrupt", "rollback"])
    session = session_create(chat_model=chat_model, version="latest")
    messages_add(session=session, messages=[{"role": "user", "content": "Hi"}])
    run(session=session)
    messages_add(session=session, messages=[{"role": "user", "content": f"Repeat after me: {LONG}"}])
    return session


def _stream_in_thread(session: Session) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target():
        try:
            box["chunks"] = list(run_stream(session=Session.objects.get(pk=session.pk)))
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 60
    while leases.holder(session_id=session.pk) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.15)
    return thread, box


@pytest.mark.django_db(transaction=True)
def test_regenerate_and_edit_during_a_run_are_refused_under_reject(busy):
    thread, box = _stream_in_thread(busy)
    with pytest.raises(SessionBusy):
        regenerate_prepare(session=busy)
    with pytest.raises(SessionBusy):
        message_edit(session=busy, seq=3, content="changed")
    with pytest.raises(SessionBusy):
        branch_switch(session=busy, seq=3, index=0)
    thread.join(60)
    # The run finished on the path it started on; nothing forked.
    assert box["chunks"][-1].status == "completed" and not box["chunks"][-1].error
    row = Session.objects.get(pk=busy.pk)
    assert row.branches == [] and row.branch == 0
    assert [m.role for m in selectors.session_messages(session=busy)] == ["user", "assistant", "user", "assistant"]
    assert list(Message.objects.filter(session=busy).values_list("branch", flat=True)) == [0, 0, 0, 0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
def test_edit_during_a_run_interrupts_it_under_interrupt(busy, policy):
    thread, box = _stream_in_thread(busy)
    stored = message_edit(session=busy, seq=3, content="Say ok", double_texting=policy)
    thread.join(60)
    assert box["chunks"][-1].status == "cancelled"
    # The cancelled reply went to the old branch (interrupt) or nowhere (rollback); the new path is clean.
    assert [(m.role, m.content) for m in selectors.session_messages(session=busy)][-1] == ("user", "Say ok")
    old = Message.objects.filter(session=busy, branch=0).order_by("seq")
    assert [m.role for m in old] == (
        ["user", "assistant", "user", "assistant"] if policy == "interrupt" else ["user", "assistant", "user"]
    )
    res = run(session=busy)
    assert not res.error
    path = [(m.role, m.content) for m in selectors.session_messages(session=busy)]
    assert path[2] == ("user", "Say ok") and path[3][0] == "assistant" and len(path) == 4
    seqs = list(Message.objects.filter(session=busy).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert stored.seq in [m.seq for m in selectors.session_messages(session=busy)]


@pytest.mark.django_db(transaction=True)
def test_racing_regenerates_never_corrupt_the_path(busy):
    """Many regenerate/edit attempts racing a run: each either waits its turn or is refused; the path stays whole."""
    thread, box = _stream_in_thread(busy)
    results: list[str] = []

    def attempt(i: int) -> None:
        try:
            session = Session.objects.get(pk=busy.pk)
            if i % 2:
                regenerate_prepare(session=session)
            else:
                message_edit(session=session, seq=3, content=f"edit {i}")
            results.append("ok")
        except SessionBusy:
            results.append("busy")
        finally:
            connections.close_all()

    racers = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(60)
    thread.join(60)
    assert results.count("busy") == 4  # the run held the session throughout
    path = list(selectors.session_messages(session=busy))
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"]
    # After the run: regenerate works, and its reply answers the same question.
    session = Session.objects.get(pk=busy.pk)
    regenerate_prepare(session=session)
    res = run(session=session)
    path = list(selectors.session_messages(session=session))
    assert [m.role for m in path] == ["user", "assistant", "user", "assistant"] and path[-1].content == res.content
    assert message_alternatives(session=session, messages=path) == {path[-1].seq: {"index": 1, "count": 2}}


def test_a_long_abandoned_branch_is_not_read(fake_chat_model, fake_llm):
    """Editing an early message of a long session: the run reads its short path, by index ranges, not the history."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    session = session_create(chat_model=fake_chat_model(), version="latest")
    n = 2000
    Message.objects.bulk_create(
        [
            Message(session=session, seq=i, role="user" if i % 2 else "assistant", content=f"m{i}", token_count=5)
            for i in range(1, n + 1)
        ]
    )
    Session.objects.filter(pk=session.pk).update(next_seq=n + 1)
    session.refresh_from_db()
    run(session=Session.objects.get(pk=session.pk))
    Message.objects.filter(session=session, seq=n + 1).delete()  # the same history again, as the benchmark does
    Session.objects.filter(pk=session.pk).update(next_seq=n + 1)
    with CaptureQueriesContext(connection) as plain:
        run(session=Session.objects.get(pk=session.pk))
    message_edit(session=session, seq=3, content="edited")
    session = Session.objects.get(pk=session.pk)
    with CaptureQueriesContext(connection) as branched:
        res = run(session=session)
    assert not res.error
    assert _sent(fake_llm.last_request) == [("user", "m1"), ("assistant", "m2"), ("user", "edited")]
    # No more queries than a run of the unbranched session (which pages through a longer window).
    assert len(branched) <= len(plain)
    reads = [q["sql"] for q in branched if "UNION ALL" in q["sql"]]
    assert len(reads) == 1
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            sql, params = paths.newest_first(
                Message.objects.filter(session=session), session, columns=("seq",), size=50
            )
            plan = " ".join(str(row) for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
        assert plan.count("chatmodel_message_branch_idx") == 2 and "SCAN chatmodel_app_message" not in plan
