"""Context budgeting: token accounting, the budget, tool-safe selection, strategies and bounded reads."""

from __future__ import annotations

import functools
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chatmodel_app import ChatModel, services
from chatmodel_app.context import FRAMING, context_window, message_tokens, select_history
from chatmodel_app.exceptions import ContextTooLong, InvalidMessages
from chatmodel_app.llm import get_litellm
from chatmodel_app.llm.messages import to_provider
from chatmodel_app.models import ChatModel as ChatModelRow
from chatmodel_app.models import Message, Run, Session, Version
from chatmodel_app.testing import FakeReply

FAKE_MODEL = "openai/fake-model"
RESULT_ROLES = ("tool", "function")


# --- helpers -----------------------------------------------------------------------------------


def session_of(name: str = "simple_assistant") -> Session:
    chat_model = ChatModelRow.objects.get(name=name)
    return services.session_create(chat_model=chat_model, version="latest")


@functools.lru_cache(maxsize=4096)
def _tokens(model: str, frozen: str) -> int:
    return message_tokens(model, json.loads(frozen))


def tokens_of(model: str, message: dict) -> int:
    return _tokens(model, json.dumps(message, sort_keys=True))


def insert(session: Session, messages: list[dict], *, count: bool = True) -> list[Message]:
    """Store ``messages`` after the session's last one, as add_messages would (seq, token_count)."""
    first = Session.objects.get(pk=session.pk).next_seq
    rows = [
        Message(
            session=session,
            seq=first + i,
            role=m["role"],
            content=m.get("content"),
            name=m.get("name", ""),
            tool_calls=m.get("tool_calls"),
            function_call=m.get("function_call"),
            tool_call_id=m.get("tool_call_id", ""),
            token_count=tokens_of(session.version.model, m) if count and not m.get("uncounted") else None,
        )
        for i, m in enumerate(messages)
    ]
    Message.objects.bulk_create(rows, batch_size=2000)
    Session.objects.filter(pk=session.pk).update(next_seq=first + len(rows))
    return rows


def assert_tool_safe(messages: list[dict]) -> None:
    """Every call is followed by exactly its results, and no result comes without its call (the provider rule)."""
    i = 0
    while i < len(messages):
        message = messages[i]
        assert message["role"] not in RESULT_ROLES, f"a result without its call at {i}: {message}"
        calls = message.get("tool_calls")
        i += 1
        if message["role"] == "assistant" and calls:
            ids = [c["id"] for c in calls]
            answered = []
            while i < len(messages) and messages[i]["role"] in RESULT_ROLES:
                answered.append(messages[i].get("tool_call_id"))
                i += 1
            assert sorted(answered) == sorted(ids), f"call {ids} sent with results {answered}"


def litellm_count(messages: list[dict], tools: list | None = None) -> int:
    return get_litellm().token_counter(model=FAKE_MODEL, messages=messages, tools=tools)


def call(call_id: str, name: str = "get_weather", arguments: str = '{"location": "Boston"}') -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- token accounting and the budget ------------------------------------------------------------------


def test_token_count_is_stored_at_write_and_never_below_the_providers_count(fake_chat_model, fake_llm):
    fake_chat_model()
    fake_llm.enqueue(FakeReply(tool_calls=[{"name": "get_weather", "arguments": {"location": "Boston"}}]))
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "What's the weather in Boston, and in Paris tomorrow?"}])
    session.run(functions=[{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}])
    session.add_messages([{"role": "function", "content": "13 degrees celsius"}])
    rows = list(Message.objects.filter(session__uuid=session.session_uuid).order_by("seq"))
    assert [r.role for r in rows] == ["user", "assistant", "function"]
    for row in rows:
        sent = to_provider(
            {"role": row.role, "content": row.content, "tool_calls": row.tool_calls, "tool_call_id": row.tool_call_id}
        )
        # Our count (text + framing) is at least what LiteLLM counts for the message, less its reply priming.
        assert row.token_count is not None and row.token_count >= litellm_count([sent]) - 3, row


def test_the_budget_fills_the_window_and_not_a_token_more(fake_chat_model, fake_llm):
    fake_chat_model(context_window=600, params={"max_tokens": 100})
    session = session_of()
    insert(session, [{"role": "user" if i % 2 == 0 else "assistant", "content": f"note {i} " * 6} for i in range(200)])
    response = services.run(session=session)
    assert not response.error, response.error_log
    sent = fake_llm.last_request["body"]["messages"]
    run = Run.objects.get()
    # What was sent fits the window less the reply's reserve, by our estimate and by LiteLLM's own count.
    assert run.estimated_prompt_tokens <= 600 - 100
    assert litellm_count(sent) <= 600 - 100
    # ... and it is full: the next older message would not have fitted.
    older = Message.objects.get(session=session, seq=run.first_seq - 1)
    assert run.estimated_prompt_tokens + older.token_count > 600 - 100
    # The newest messages, contiguous, oldest first, after the system prompt.
    stored = list(Message.objects.filter(session=session, seq__gte=run.first_seq, seq__lte=200).order_by("seq"))
    assert [m["content"] for m in sent[1:]] == [m.content for m in stored]
    assert (run.last_seq, run.message_count) == (200, len(stored))
    assert run.prompt_tokens is not None  # the provider's own count, next to our estimate


def test_context_window_sources(make_chat_model, settings):
    make_chat_model("known", model="gpt-4o-mini")
    make_chat_model("unknown", model="openai/some-private-model")
    make_chat_model("pinned", model="gpt-4o-mini", context_window=5000)
    known, unknown, pinned = (Version.objects.get(chat_model__name=n) for n in ("known", "unknown", "pinned"))
    assert context_window(known) == get_litellm().get_model_info("gpt-4o-mini")["max_input_tokens"]
    settings.CHATMODEL_DEFAULT_CONTEXT_WINDOW = 3000
    assert context_window(unknown) == 3000
    assert context_window(pinned) == 5000


def test_tools_and_the_reply_reserve_are_paid_from_the_window(fake_chat_model, fake_llm):
    tools = [
        {
            "name": f"tool_{n}",
            "description": "a long description of what this tool does " * 5,
            "parameters": {"type": "object", "properties": {"x": {"type": "string", "description": "an argument"}}},
        }
        for n in range(4)
    ]
    fake_chat_model(context_window=1200, params={"max_tokens": 200})
    session = session_of()
    insert(session, [{"role": "user", "content": f"message {i} " * 5} for i in range(300)])
    without = services.run(session=session)
    sent_without = fake_llm.last_request["body"]["messages"]
    insert(session, [{"role": "user", "content": "and now with tools"}])
    with_tools = services.run(session=session, functions=tools)
    body = fake_llm.last_request["body"]
    assert not without.error and not with_tools.error
    assert len(body["messages"]) < len(sent_without)
    assert litellm_count(body["messages"], tools=body["tools"]) <= 1200 - 200
    run = Run.objects.order_by("-created_at").first()
    assert run.estimated_prompt_tokens <= 1200 - 200


def test_newest_turn_too_long_is_an_error_without_a_provider_call(fake_chat_model, fake_llm):
    fake_chat_model(context_window=400, params={"max_tokens": 50})
    session = session_of()
    insert(session, [{"role": "user", "content": "short"}, {"role": "assistant", "content": "ok"}])
    insert(session, [{"role": "user", "content": "too long " * 300}])
    response = services.run(session=session)
    assert response.error and response.error_code == "context_window_exceeded"
    assert "does not fit" in response.error_log
    assert fake_llm.requests == []
    run = Run.objects.get()
    assert run.status == Run.Status.FAILED and run.error == "context_window_exceeded"
    # The session is free again: the user can shorten the message and go on.
    services.messages_add(session=session, messages=[{"role": "user", "content": "short again"}])


def test_prompt_and_reserve_bigger_than_the_window(fake_chat_model, fake_llm):
    fake_chat_model(context_window=300, params={"max_tokens": 100}, system_prompt="Be helpful. " * 80)
    session = session_of()
    insert(session, [{"role": "user", "content": "hi"}])
    response = services.run(session=session)
    assert response.error and response.error_code == "context_window_exceeded"
    assert "system prompt" in response.error_log
    assert fake_llm.requests == []


# --- tool safety -------------------------------------------------------------------------------------


def test_legacy_function_call_goes_with_its_result(fake_chat_model, fake_llm):
    """A stored legacy function_call (no tool_calls) and its id-less function result are sent as a pair."""
    fake_chat_model()
    session = session_of()
    insert(
        session,
        [
            {"role": "user", "content": "Weather in Boston?"},
            {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
            {"role": "function", "name": "get_weather", "content": "13 degrees celsius"},
        ],
    )
    response = services.run(session=session)
    assert not response.error, response.error_log
    sent = fake_llm.last_request["body"]["messages"][1:]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]
    assert sent[2]["content"] == "13 degrees celsius"


def test_a_call_is_dropped_with_its_results_never_split(fake_chat_model, fake_llm):
    fake_chat_model(context_window=500, params={"max_tokens": 50})
    session = session_of()
    big = "result data " * 60
    insert(
        session,
        [
            {"role": "user", "content": "old question"},
            {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b")]},
            {"role": "tool", "tool_call_id": "a", "content": big},
            {"role": "tool", "tool_call_id": "b", "content": big},
            *[{"role": "user", "content": f"filler {i} " * 10} for i in range(5)],
        ],
    )
    response = services.run(session=session)
    assert not response.error, response.error_log
    sent = fake_llm.last_request["body"]["messages"][1:]
    assert_tool_safe(sent)
    assert not any(m["role"] == "tool" for m in sent)


def test_unanswered_old_call_is_left_out_and_newest_pending_call_is_refused(fake_chat_model, fake_llm):
    fake_chat_model()
    session = session_of()
    insert(
        session,
        [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": None, "tool_calls": [call("x"), call("y")]},
            {"role": "tool", "tool_call_id": "x", "content": "only one answer"},
            {"role": "user", "content": "never mind"},
        ],
    )
    assert not services.run(session=session).error
    sent = fake_llm.last_request["body"]["messages"][1:]
    assert [m["content"] for m in sent] == ["q1", "never mind"]
    insert(session, [{"role": "assistant", "content": None, "tool_calls": [call("z")]}])
    response = services.run(session=session)
    assert response.error and response.error_code == "invalid_messages"
    assert "waiting for its result" in response.error_log


# Random histories: user and assistant turns, calls with 1-3 results in any order, never-answered
# and half-answered calls, legacy function calls, stray and late results, rows stored without a token count.
_turn = st.one_of(
    st.tuples(st.just("user"), st.integers(0, 300)),
    st.tuples(st.just("assistant"), st.integers(0, 300)),
    st.tuples(
        st.just("calls"),
        st.integers(1, 3),  # how many calls
        st.lists(st.booleans(), min_size=3, max_size=3),  # which are answered
        st.permutations([0, 1, 2]),  # the order of the results
        st.integers(0, 300),  # the size of each result
    ),
    st.tuples(st.just("legacy"), st.booleans(), st.integers(0, 200)),
    st.tuples(st.just("stray"), st.integers(0, 50)),
    st.tuples(st.just("late"), st.integers(0, 50)),  # a result for the last call, after other turns
)


def build_history(turns: list[tuple], last_user: bool, uncounted: list[bool]) -> list[dict]:
    rows: list[dict] = []
    last_call = None
    for n, turn in enumerate(turns):
        kind = turn[0]
        if kind in ("user", "assistant"):
            rows.append({"role": kind, "content": f"{kind} {n} " + "x" * turn[1]})
        elif kind == "calls":
            _, k, answered, order, size = turn
            calls = [call(f"c{n}_{i}", name=f"fn_{i}") for i in range(k)]
            # A late result answers the first call left unanswered here (so it may complete the call).
            last_call = next((c["id"] for i, c in enumerate(calls) if not answered[i]), calls[0]["id"])
            rows.append({"role": "assistant", "content": None, "tool_calls": calls})
            for i in order:
                if i < k and answered[i]:
                    rows.append({"role": "tool", "tool_call_id": f"c{n}_{i}", "content": "r" * size})
        elif kind == "legacy":
            _, answered, size = turn
            rows.append({"role": "assistant", "content": None, "function_call": {"name": "fn", "arguments": "{}"}})
            if answered:
                rows.append({"role": "function", "name": "fn", "content": "r" * size})
        elif kind == "late" and last_call:
            rows.append({"role": "tool", "tool_call_id": last_call, "content": "l" * turn[1]})
        else:
            rows.append({"role": "tool", "tool_call_id": f"nobody_{n}", "content": "s" * turn[1]})
    if last_user:
        rows.append({"role": "user", "content": "the newest question"})
    for row, flag in zip(rows, uncounted, strict=False):
        row["uncounted"] = flag
    return rows


def expected_newest(rows: list[dict], model: str) -> tuple[bool, int]:
    """Whether the newest turn can be sent (an independent reading of the rule), and what it costs."""
    tail: list[dict] = []
    for row in reversed(rows):
        if row["role"] in RESULT_ROLES:
            tail.append(row)
            continue
        ids = [c["id"] for c in row.get("tool_calls") or []]
        if row.get("function_call"):
            loose = [r for r in tail if not r.get("tool_call_id")]
            return bool(loose), tokens_of(model, row) + sum(tokens_of(model, r) for r in loose[-1:])
        if ids:
            answers = {r["tool_call_id"]: r for r in tail if r.get("tool_call_id") in ids}
            return len(answers) == len(ids), tokens_of(model, row) + sum(tokens_of(model, r) for r in answers.values())
        return True, tokens_of(model, row)  # results after a plain turn answer nothing: they are left out
    return True, 0


@pytest.mark.django_db
@example(  # a call answered only after another turn: that result answers nothing
    turns=[("calls", 1, [False, False, False], [0, 1, 2], 10), ("user", 5), ("late", 5)],
    last_user=True,
    uncounted=[],
    budget=2000,
    last_messages=None,
)
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    turns=st.lists(_turn, max_size=14),
    last_user=st.sampled_from([True, True, True, False]),
    uncounted=st.lists(st.booleans(), max_size=40),
    budget=st.one_of(st.integers(40, 1500), st.integers(200, 4000), st.integers(0, 12)),
    last_messages=st.one_of(st.none(), st.integers(1, 8)),
)
def test_random_histories_never_split_a_call(turns, last_user, uncounted, budget, last_messages):
    chat_model, _ = ChatModelRow.objects.get_or_create(name="hypothesis")
    version = chat_model.versions.first() or services.version_create(chat_model=chat_model, model="offline/demo")
    session = services.session_create(chat_model=chat_model, version=version)
    rows = build_history(turns, last_user, uncounted)
    stored = insert(session, rows)
    sendable, newest_cost = expected_newest(rows, version.model)
    try:
        selection = select_history(session=session, version=version, budget=budget, max_messages=last_messages)
    except InvalidMessages:
        event("refused: the newest call waits for its result")
        assert not sendable, "refused a history whose newest turn can be sent"
        return
    except ContextTooLong:
        event("refused: the newest turn does not fit")
        assert sendable and newest_cost > budget
        return
    assert sendable, "sent a history whose newest call waits for its result"
    if not any(r["role"] not in RESULT_ROLES for r in rows):
        assert selection.messages == []
        return
    assert newest_cost <= budget
    sent = selection.messages
    event("sent, some left out" if selection.truncated else "sent everything")
    event(f"calls sent: {min(sum(1 for m in sent if m.get('tool_calls')), 3)}")
    seqs = [m["seq"] for m in sent]
    # The newest turn is there; only results that answer nothing may come after it.
    assert seqs == sorted(seqs)
    assert all(r.role in RESULT_ROLES for r in stored if r.seq > seqs[-1])
    # Every call with all its results, no result without its call, in the provider's form too.
    assert_tool_safe(sent)
    assert_tool_safe([to_provider(m) for m in sent])
    # It fits, and the counts are what each message costs.
    assert sum(m["token_count"] for m in sent) == selection.tokens <= budget
    for m in sent:
        assert m["token_count"] == tokens_of(version.model, rows[m["seq"] - stored[0].seq])
    # A contiguous suffix, but for calls nobody (fully) answered and results without a call.
    chosen = set(seqs)
    for row in stored:
        if seqs[0] <= row.seq and row.seq not in chosen:
            assert row.role in RESULT_ROLES or row.tool_calls or row.function_call, row
    if last_messages is not None and len(sent) > last_messages:
        # Only the newest turn (a call and its results) may stretch the count.
        assert len(selection.units) == 1
    if not selection.truncated:
        # Nothing was left out for room: every user and plain assistant turn is there.
        assert all(r.seq in chosen for r in stored if r.role == "user")


# --- last_messages -----------------------------------------------------------------------------------


def test_last_messages_sends_at_most_n(fake_chat_model, fake_llm):
    fake_chat_model(truncation="last_messages", truncation_last_messages=3)
    session = session_of()
    insert(session, [{"role": "user" if i % 2 else "assistant", "content": f"m{i}"} for i in range(1, 11)])
    assert not services.run(session=session).error
    sent = fake_llm.last_request["body"]["messages"]
    assert [m["content"] for m in sent[1:]] == ["m8", "m9", "m10"]
    run = Run.objects.get()
    assert (run.first_seq, run.last_seq, run.message_count, run.used_summary) == (8, 10, 3, False)


def test_last_messages_keeps_the_newest_call_whole(fake_chat_model, fake_llm):
    fake_chat_model(truncation="last_messages", truncation_last_messages=2)
    session = session_of()
    insert(
        session,
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b", "get_time", "{}")]},
            {"role": "tool", "tool_call_id": "b", "content": "noon"},
            {"role": "tool", "tool_call_id": "a", "content": "13 degrees"},
        ],
    )
    assert not services.run(session=session).error
    sent = fake_llm.last_request["body"]["messages"][1:]
    assert [m["role"] for m in sent] == ["assistant", "tool", "tool"]
    assert_tool_safe(sent)


# --- long sessions -------------------------------------------------------------------------------------


def long_history(n: int) -> list[dict]:
    texts = ["Tell me about the weather today.", "It is sunny with a light breeze.", "And tomorrow?", "Rain."]
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{texts[i % 4]} ({i % 7})"} for i in range(n - 1)
    ] + [{"role": "user", "content": "The newest question."}]


def test_ten_thousand_messages_run_within_the_budget_with_the_same_queries_as_a_hundred(fake_chat_model, fake_llm):
    fake_chat_model()
    small, large = session_of(), session_of()
    insert(small, long_history(100))
    insert(large, long_history(10_000))
    services.run(session=session_of())  # warm caches (model info, tokenizer) outside the measurement
    fake_llm.reset()
    queries = {}
    for label, session in (("small", small), ("large", large)):
        with CaptureQueriesContext(connection) as captured:
            response = services.run(session=session)
        assert not response.error, response.error_log
        queries[label] = len(captured)
    assert queries["large"] == queries["small"] <= 20
    body = fake_llm.last_request["body"]
    sent = body["messages"]
    budget = 8192 - 1024  # CHATMODEL_DEFAULT_CONTEXT_WINDOW less CHATMODEL_DEFAULT_MAX_TOKENS: LiteLLM does not know it
    assert litellm_count(sent) <= budget
    run = Run.objects.filter(session=large).get()
    assert run.estimated_prompt_tokens <= budget
    assert sent[-1]["content"] == "The newest question."
    assert run.last_seq == 10_000 and run.message_count == len(sent) - 1 > 100
    newest = list(Message.objects.filter(session=large, seq__gte=run.first_seq, seq__lte=10_000).order_by("seq"))
    assert [m["content"] for m in sent[1:]] == [m.content for m in newest]
    # Every read of that run was bounded by the index: no query without a seq bound or a LIMIT.
    reads = [
        q["sql"] for q in captured.captured_queries if "chatmodel_app_message" in q["sql"] and "SELECT" in q["sql"]
    ]
    assert reads and all("LIMIT" in sql or '"seq" >=' in sql or '"seq" IN' in sql for sql in reads), reads


@override_settings(CHATMODEL_DEFAULT_CONTEXT_WINDOW=2048)
def test_rows_without_a_token_count_are_counted_on_read(fake_chat_model, fake_llm):
    fake_chat_model()
    session = session_of()
    insert(session, [{"role": "user", "content": "lorem ipsum " * 40} for _ in range(100)], count=False)
    assert not services.run(session=session).error
    sent = fake_llm.last_request["body"]["messages"]
    assert litellm_count(sent) <= 2048 - 1024
    assert 1 < len(sent) < 100
    assert Run.objects.get().estimated_prompt_tokens >= litellm_count(sent) - FRAMING


def test_a_result_after_a_later_turn_does_not_answer_the_call(make_chat_model):
    """Results belong to the turn right after their call; one that comes later answers nothing."""
    make_chat_model()
    session = session_of()
    insert(
        session,
        [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": None, "tool_calls": [call("a")]},
            {"role": "user", "content": "q2"},
            {"role": "tool", "tool_call_id": "a", "content": "late"},
            {"role": "user", "content": "q3"},
        ],
    )
    selection = select_history(session=session, version=session.version, budget=1000)
    assert [m["content"] for m in selection.messages] == ["q1", "q2", "q3"]
