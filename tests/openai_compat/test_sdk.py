"""The real ``openai`` package against the OpenAI-compatible door of a live server (pytest-django's, WSGI).

Every call goes through the SDK as a user's code would write it; what is stored is read back from the
database, as the admin shows it (sessions, their messages and runs).
"""

from __future__ import annotations

import threading

import openai
import pytest
from django.test import override_settings

from chatmodel_app.models import Message, Run, Session
from chatmodel_app.testing import FakeReply

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _conv_uuid(conversation_id: str) -> str:
    assert conversation_id.startswith("conv_")
    return conversation_id[len("conv_") :]


def _resp_uuid(response_id: str) -> str:
    assert response_id.startswith("resp_")
    return response_id[len("resp_") :]


def _rows(session: Session) -> list[tuple]:
    return list(session.messages.order_by("seq").values_list("role", "content"))


# --- models -------------------------------------------------------------------------------------------


def test_models_are_the_chat_models_with_a_published_version(alice, make_chat_model):
    make_chat_model("simple_assistant")
    make_chat_model("draft_only", published=False)

    assert [m.id for m in alice.models.list()] == ["simple_assistant"]
    model = alice.models.retrieve("simple_assistant")
    assert (model.id, model.object, model.owned_by) == ("simple_assistant", "model", "chatmodel_app")
    assert alice.models.retrieve("draft_only@1").id == "draft_only@1"  # a version by number answers
    with pytest.raises(openai.NotFoundError):
        alice.models.retrieve("draft_only")  # nothing published
    with pytest.raises(openai.NotFoundError):
        alice.models.retrieve("no_such_model")


def test_model_names_a_version_by_number_or_label(alice, make_chat_model):
    from chatmodel_app.models import ChatModel
    from chatmodel_app.services import labels, version_create

    chat_model = make_chat_model("simple_assistant", system_prompt="v1")
    version_create(chat_model=chat_model, system_prompt="v2", model="offline/demo")
    labels.label_move(chat_model=ChatModel.objects.get(), label="staging", ratios={2: 1.0})

    assert alice.responses.create(model="simple_assistant", input="Hi").model == "simple_assistant@1"
    assert alice.responses.create(model="simple_assistant@2", input="Hi").model == "simple_assistant@2"
    staged = alice.responses.create(model="simple_assistant@staging", input="Hi")
    assert staged.model == "simple_assistant@2"
    assert Session.objects.get(uuid=_conv_uuid(staged.conversation.id)).version.number == 2
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="simple_assistant@nolabel", input="Hi")


# --- conversations --------------------------------------------------------------------------------------


def test_conversation_create_retrieve_update_items_and_delete(alice, make_chat_model):
    make_chat_model("simple_assistant")
    conversation = alice.conversations.create(
        metadata={"model": "simple_assistant", "topic": "demo"},
        items=[{"type": "message", "role": "user", "content": "Hello, I'm a user."}],
    )
    assert conversation.object == "conversation"
    session = Session.objects.get(uuid=_conv_uuid(conversation.id))
    assert session.user.username == "alice"
    assert session.metadata == {"model": "simple_assistant", "topic": "demo"}
    assert _rows(session) == [("user", "Hello, I'm a user.")]

    assert alice.conversations.retrieve(conversation.id).metadata == {"model": "simple_assistant", "topic": "demo"}
    updated = alice.conversations.update(conversation.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    session.refresh_from_db()
    assert session.metadata == {"topic": "changed"}

    added = alice.conversations.items.create(
        conversation.id, items=[{"type": "message", "role": "user", "content": "Second message."}]
    )
    assert [(i.type, i.role, i.content[0].text) for i in added.data] == [("message", "user", "Second message.")]
    assert _rows(session) == [("user", "Hello, I'm a user."), ("user", "Second message.")]

    # A response on the conversation answers its last message; the reply is an item too.
    response = alice.responses.create(model="simple_assistant", conversation=conversation.id, input="Third.")
    assert response.output_text == "You said: Third."
    assert response.conversation.id == conversation.id

    newest_first = list(alice.conversations.items.list(conversation.id))
    assert [i.content[0].text for i in newest_first] == [
        "You said: Third.",
        "Third.",
        "Second message.",
        "Hello, I'm a user.",
    ]
    assert newest_first[0].role == "assistant" and newest_first[0].content[0].type == "output_text"
    # Page by page (limit 1), oldest first: the SDK follows after=last_id until has_more is false.
    paged = [i.id for i in alice.conversations.items.list(conversation.id, order="asc", limit=1)]
    assert paged == [i.id for i in reversed(newest_first)]
    one = alice.conversations.items.retrieve(newest_first[1].id, conversation_id=conversation.id)
    assert one.content[0].text == "Third."

    deleted = alice.conversations.delete(conversation.id)
    assert (deleted.id, deleted.deleted) == (conversation.id, True)
    assert not Session.objects.filter(uuid=_conv_uuid(conversation.id)).exists()
    with pytest.raises(openai.NotFoundError):
        alice.conversations.retrieve(conversation.id)


def test_a_conversation_needs_a_chat_model(alice, make_chat_model):
    make_chat_model("simple_assistant")
    with pytest.raises(openai.BadRequestError) as caught:
        alice.conversations.create(metadata={"topic": "no model"})
    assert caught.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        alice.conversations.create(metadata={"model": "nobody"})
    # The model may also be named as a body field of its own (extra_body).
    conversation = alice.conversations.create(extra_body={"model": "simple_assistant"})
    assert Session.objects.get(uuid=_conv_uuid(conversation.id)).chat_model.name == "simple_assistant"
    assert Session.objects.count() == 1


# --- responses ----------------------------------------------------------------------------------------


def test_a_response_is_a_stored_run(alice, make_chat_model):
    make_chat_model("simple_assistant")
    response = alice.responses.create(model="simple_assistant", input="Hello there")

    assert response.status == "completed"
    assert response.output_text == "Hello! What can I help you with?"
    assert response.model == "simple_assistant@1"
    run = Run.objects.get(uuid=_resp_uuid(response.id))
    assert run.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (run.prompt_tokens, run.completion_tokens)
    assert response.usage.total_tokens == run.prompt_tokens + run.completion_tokens
    session = run.session
    assert response.conversation.id == f"conv_{session.uuid.hex}"
    assert session.user.username == "alice"
    assert _rows(session) == [("user", "Hello there"), ("assistant", "Hello! What can I help you with?")]
    assert session.messages.get(role="assistant").run == run

    again = alice.responses.retrieve(response.id)
    assert again.output_text == response.output_text
    assert again.usage.total_tokens == response.usage.total_tokens


def test_a_streamed_response_sends_responses_events(alice, make_chat_model):
    make_chat_model("simple_assistant")
    events = list(alice.responses.create(model="simple_assistant", input="one two three four", stream=True))

    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    text = "".join(deltas)
    assert text == "You said: one two three four"
    assert events[-4].text == text
    final = events[-1].response
    assert final.status == "completed" and final.output_text == text
    assert final.usage.total_tokens > 0
    assert events[2].item.id == final.output[0].id == events[-2].item.id
    assert final.id == events[0].response.id

    run = Run.objects.get(uuid=_resp_uuid(final.id))
    assert run.stream and run.status == "completed"
    assert _rows(run.session) == [("user", "one two three four"), ("assistant", text)]


def test_previous_response_id_continues_the_same_session(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant", system_prompt="You are terse.")
    first = alice.responses.create(model="simple_assistant", input="My name is Ada.")
    second = alice.responses.create(model="simple_assistant", input="What is my name?", previous_response_id=first.id)

    assert second.conversation.id == first.conversation.id
    assert second.previous_response_id == first.id
    # The input items of a response are the messages its run was given.
    given = [(i.role, i.content[0].text) for i in alice.responses.input_items.list(second.id, order="asc")]
    assert given == [
        ("user", "My name is Ada."),
        ("assistant", "Echo: My name is Ada."),
        ("user", "What is my name?"),
    ]
    sent = fake_llm.last_request["body"]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "You are terse."),
        ("user", "My name is Ada."),
        ("assistant", "Echo: My name is Ada."),
        ("user", "What is my name?"),
    ]
    session = Session.objects.get()
    assert session.runs.count() == 2 and session.messages.count() == 4


def test_function_call_round_trip(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant")
    fake_llm.enqueue(FakeReply(tool_calls=[{"id": "call_w1", "name": "get_weather", "arguments": {"city": "Paris"}}]))
    fake_llm.enqueue(FakeReply(content="It is 22 degrees in Paris."))

    asked = alice.responses.create(model="simple_assistant", input="Weather in Paris?", tools=[WEATHER_TOOL])
    (call,) = [item for item in asked.output if item.type == "function_call"]
    assert (call.call_id, call.name, call.arguments) == ("call_w1", "get_weather", '{"city": "Paris"}')
    assert fake_llm.last_request["body"]["tools"][0]["function"]["name"] == "get_weather"

    # As OpenAI's guide writes it: the call's output, continuing from the previous response.
    answered = alice.responses.create(
        model="simple_assistant",
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees"}],
        tools=[WEATHER_TOOL],
    )
    assert answered.output_text == "It is 22 degrees in Paris."
    sent = fake_llm.last_request["body"]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "call_w1"
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "22 degrees"}

    session = Session.objects.get()
    assert [(m.role, m.tool_call_id) for m in session.messages.order_by("seq")] == [
        ("user", ""),
        ("assistant", ""),
        ("tool", "call_w1"),
        ("assistant", ""),
    ]
    # The conversation's items show the call and its output as OpenAI items.
    item_types = [i.type for i in alice.conversations.items.list(asked.conversation.id, order="asc")]
    assert item_types == ["message", "function_call", "function_call_output", "message"]


def test_function_call_streamed_and_sent_back_with_the_whole_output(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant")
    fake_llm.enqueue(FakeReply(tool_calls=[{"id": "call_w2", "name": "get_weather", "arguments": {"city": "Oslo"}}]))
    fake_llm.enqueue(FakeReply(content="Cold in Oslo."))

    events = list(
        alice.responses.create(model="simple_assistant", input="Weather in Oslo?", tools=[WEATHER_TOOL], stream=True)
    )
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == '{"city": "Oslo"}'
    final = events[-1].response
    assert events[-1].type == "response.completed"
    (call,) = final.output
    assert (call.type, call.call_id, call.arguments) == ("function_call", "call_w2", '{"city": "Oslo"}')

    # A client may send back the whole output with the result: the items already stored are not stored again.
    answered = alice.responses.create(
        model="simple_assistant",
        previous_response_id=final.id,
        input=[
            *[item.model_dump() for item in final.output],
            {"type": "function_call_output", "call_id": "call_w2", "output": "-5"},
        ],
    )
    assert answered.output_text == "Cold in Oslo."
    assert Message.objects.filter(role="assistant", tool_calls__isnull=False).count() == 1
    assert Session.objects.get().messages.count() == 4


def test_cancel_stops_a_streaming_response(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant")
    fake_llm.token_delay = 0.1
    stream = alice.responses.create(model="simple_assistant", input=" ".join(f"w{i}" for i in range(60)), stream=True)
    events = []
    for event in stream:
        events.append(event)
        if event.type == "response.output_text.delta":
            break
    response_id = events[0].response.id
    assert alice.responses.retrieve(response_id).status == "in_progress"
    cancelled = alice.responses.cancel(response_id)
    assert cancelled.status == "cancelled"
    rest = list(stream)
    assert rest[-1].type == "response.incomplete"
    assert rest[-1].response.status == "cancelled"
    run = Run.objects.get(uuid=_resp_uuid(response_id))
    assert run.status == "cancelled"
    reply = run.messages.get()
    assert reply.metadata == {"cancelled": True} and reply.content.startswith("Echo: w0")
    # A finished response is returned as it is.
    assert alice.responses.cancel(response_id).status == "cancelled"


def test_a_busy_session_is_a_conflict(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant")
    fake_llm.token_delay = 0.1
    stream = alice.responses.create(model="simple_assistant", input="a b c d e f g h i j k l", stream=True)
    first = next(iter(stream))
    with pytest.raises(openai.ConflictError) as caught:
        alice.responses.create(model="simple_assistant", input="Hello?", previous_response_id=first.response.id)
    assert caught.value.body["code"] == "session_busy"
    list(stream)
    assert _rows(Session.objects.get())[-1][0] == "assistant"  # the refused message was not slipped in


# --- chat completions -----------------------------------------------------------------------------------


def test_chat_completion_stores_the_call_as_a_new_session(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant", system_prompt="The admin's prompt.")
    completion = alice.chat.completions.create(
        model="simple_assistant",
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "How are you?"},
        ],
        temperature=0.2,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: How are you?"
    assert completion.choices[0].finish_reason == "stop"
    sent = fake_llm.last_request["body"]
    assert sent["temperature"] == 0.2
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", "The admin's prompt."),
        ("user", "Answer in French."),
        ("user", "Hi"),
        ("assistant", "Salut"),
        ("user", "How are you?"),
    ]
    session = Session.objects.get()
    assert session.metadata == {"openai_endpoint": "chat.completions"}
    assert session.user.username == "alice"
    notes = session.messages.filter(metadata__openai_role="system")
    assert [m.content for m in notes] == ["Answer in French."]
    assert session.messages.count() == 5
    run = session.runs.get()
    assert completion.id == f"chatcmpl-{run.uuid.hex}"
    assert completion.usage.total_tokens == run.prompt_tokens + run.completion_tokens

    # Every call is a session of its own.
    alice.chat.completions.create(model="simple_assistant", messages=[{"role": "user", "content": "Again"}])
    assert Session.objects.count() == 2


def test_chat_completion_streamed(alice, make_chat_model):
    make_chat_model("simple_assistant")
    chunks = list(
        alice.chat.completions.create(
            model="simple_assistant",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens > 0
    run = Run.objects.get()
    assert run.stream and chunks[0].id == f"chatcmpl-{run.uuid.hex}"
    assert _rows(run.session) == [("user", "one two three"), ("assistant", text)]


def test_chat_completion_tool_calls(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant")
    fake_llm.enqueue(FakeReply(tool_calls=[{"id": "call_c1", "name": "get_weather", "arguments": {"city": "Rome"}}]))
    tool = {"type": "function", "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"}}
    messages = [{"role": "user", "content": "Weather in Rome?"}]
    chunks = list(alice.chat.completions.create(model="simple_assistant", messages=messages, tools=[tool], stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "call_c1" and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"city": "Rome"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

    # The stateless follow-up: the whole history with the call and its result.
    fake_llm.enqueue(FakeReply(content="Sunny."))
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_c1", "content": "sunny"},
    ]
    completion = alice.chat.completions.create(model="simple_assistant", messages=messages, tools=[tool])
    assert completion.choices[0].message.content == "Sunny."
    assert fake_llm.last_request["body"]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_c1",
        "content": "sunny",
    }


# --- errors, refusals and ownership ---------------------------------------------------------------------


def test_errors_raise_the_sdks_exception_classes(openai_for, alice, make_chat_model):
    make_chat_model("simple_assistant")
    with pytest.raises(openai.AuthenticationError):
        openai_for("not-a-token").models.list()
    with pytest.raises(openai.NotFoundError) as caught:
        alice.responses.create(model="nobody", input="Hi")
    assert caught.value.body["code"] == "chat_model_not_found"
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="simple_assistant@9", input="Hi")
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve("resp_0123456789abcdef0123456789abcdef")
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(model="simple_assistant", input="Hi", temperature=5)
    assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(model="simple_assistant", input="Hi", tools=[{"type": "web_search"}])
    assert caught.value.body["param"] == "tools"
    with pytest.raises(openai.BadRequestError):
        alice.chat.completions.create(model="simple_assistant", messages=[])
    assert not Session.objects.exists()  # nothing refused left a session behind


def test_instructions_and_provider_settings_are_refused(alice, make_chat_model):
    make_chat_model("simple_assistant")
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(model="simple_assistant", input="Hi", instructions="Be a pirate.")
    assert caught.value.body["param"] == "instructions"
    for extra in ({"api_base": "http://127.0.0.1:9/v1"}, {"api_key": "sk-mine"}, {"base_url": "http://x"}):
        with pytest.raises(openai.BadRequestError) as caught:
            alice.responses.create(model="simple_assistant", input="Hi", extra_body=extra)
        assert caught.value.body["param"] == next(iter(extra))
        with pytest.raises(openai.BadRequestError) as caught:
            alice.chat.completions.create(
                model="simple_assistant", messages=[{"role": "user", "content": "Hi"}], extra_body=extra
            )
        assert caught.value.body["param"] == next(iter(extra))
        assert "sk-mine" not in str(caught.value.body)
    with pytest.raises(openai.BadRequestError) as caught:
        alice.responses.create(model="simple_assistant", input="Hi", store=False)
    assert caught.value.body["param"] == "store"
    with pytest.raises(openai.BadRequestError):
        alice.responses.create(model="simple_assistant", input=[{"role": "developer", "content": "New rules."}])
    assert not Session.objects.exists() and not Run.objects.exists()


def test_another_users_conversation_and_response_are_not_found(alice, bob, make_chat_model):
    make_chat_model("simple_assistant")
    response = alice.responses.create(model="simple_assistant", input="Private")
    conversation_id = response.conversation.id
    attempts = [
        lambda: bob.conversations.retrieve(conversation_id),
        lambda: bob.conversations.update(conversation_id, metadata={"x": "y"}),
        lambda: bob.conversations.delete(conversation_id),
        lambda: list(bob.conversations.items.list(conversation_id)),
        lambda: bob.conversations.items.create(conversation_id, items=[{"role": "user", "content": "hi"}]),
        lambda: bob.responses.retrieve(response.id),
        lambda: bob.responses.cancel(response.id),
        lambda: bob.responses.create(model="simple_assistant", input="Hi", conversation=conversation_id),
        lambda: bob.responses.create(model="simple_assistant", input="Hi", previous_response_id=response.id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
    session = Session.objects.get()
    assert _rows(session) == [("user", "Private"), ("assistant", "You said: Private")]
    assert session.metadata == {} and session.runs.count() == 1


@override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {"chatmodel_run": "2/minute"}})
def test_runs_share_the_run_throttle(alice, make_chat_model):
    make_chat_model("simple_assistant")
    alice.responses.create(model="simple_assistant", input="one")
    alice.chat.completions.create(model="simple_assistant", messages=[{"role": "user", "content": "two"}])
    with pytest.raises(openai.RateLimitError) as caught:
        alice.responses.create(model="simple_assistant", input="three")
    assert caught.value.response.headers.get("Retry-After")
    assert alice.models.list().data  # reads are not runs


def test_concurrent_streams_each_get_their_own_events(alice, make_chat_model):
    make_chat_model("simple_assistant")
    results: dict[int, str] = {}

    def go(n: int) -> None:
        events = alice.responses.create(model="simple_assistant", input=f"stream {n}", stream=True)
        results[n] = "".join(e.delta for e in events if e.type == "response.output_text.delta")

    threads = [threading.Thread(target=go, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: f"You said: stream {n}" for n in range(3)}
    assert Session.objects.count() == 3


def test_a_failed_model_call_raises_or_ends_the_stream_as_failed(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant")
    fake_llm.enqueue(FakeReply(fault="500"))
    with pytest.raises(openai.InternalServerError):
        alice.responses.create(model="simple_assistant", input="Hi")
    fake_llm.enqueue(FakeReply(fault="500"))
    events = list(alice.responses.create(model="simple_assistant", input="Hi", stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1].response.status == "failed" and events[-1].response.error.code
    fake_llm.enqueue(FakeReply(fault="500"))
    with pytest.raises(openai.APIError):
        list(
            alice.chat.completions.create(
                model="simple_assistant", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )
    # Each failed call is still a session with its message and a failed run.
    assert sorted(Run.objects.values_list("status", flat=True)) == ["failed"] * 3
    assert Message.objects.filter(role="user").count() == 3


def test_an_interrupting_version_stops_the_active_run_for_the_new_turn(alice, fake_chat_model, fake_llm):
    fake_chat_model("simple_assistant", double_texting="interrupt")
    fake_llm.token_delay = 0.1
    stream = alice.responses.create(model="simple_assistant", input=" ".join(["word"] * 40), stream=True)
    first = next(iter(stream))
    second = alice.responses.create(
        model="simple_assistant", input="Never mind.", previous_response_id=first.response.id
    )
    assert second.output_text == "Echo: Never mind."
    assert list(stream)[-1].response.status == "cancelled"
    assert list(Run.objects.order_by("created_at").values_list("status", flat=True)) == ["cancelled", "completed"]
    assert [role for role, _ in _rows(Session.objects.get())] == ["user", "assistant", "user", "assistant"]
