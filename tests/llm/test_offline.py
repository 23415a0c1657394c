import pytest

from chatmodel_app.llm.offline import demo_reply

WEATHER = {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


def test_greeting_and_echo():
    assert demo_reply([{"role": "user", "content": "Hello."}]) == {"content": "Hello! What can I help you with?"}
    assert demo_reply([{"role": "user", "content": "Tell me more"}]) == {"content": "You said: Tell me more"}


def test_function_call_when_asked():
    reply = demo_reply([{"role": "user", "content": "What's the weather in Boston?"}], [WEATHER])
    call = reply["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and call["arguments"] == '{"location": "Boston"}'


def test_no_function_call_when_not_asked():
    assert "content" in demo_reply([{"role": "user", "content": "Hello"}], [WEATHER])


def test_answers_with_the_function_result():
    messages = [
        {"role": "user", "content": "What's the weather in Boston?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Boston"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "13 degrees celsius"},
    ]
    assert demo_reply(messages) == {"content": "It's 13 degrees celsius in Boston."}


@pytest.mark.django_db
def test_a_repeated_word_message_streams_and_is_stored(make_chat_model):
    # LiteLLM fails a stream that repeats one chunk many times: the demo never sends one chunk twice in a row.
    from chatmodel_app import ChatModel

    make_chat_model()
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "ha " * 150}])
    chunks = list(session.run(stream=True))
    final = chunks[-1]
    assert not final.error, final.error_log
    texts = [c.content for c in chunks[:-1] if c.content]
    assert len(texts) > 3 and all(a != b for a, b in zip(texts, texts[1:], strict=False))
    assert "".join(texts) == "You said: " + ("ha " * 150).strip()
