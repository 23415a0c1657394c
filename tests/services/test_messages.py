"""Validation at the edge: bad messages and tools get a clear error and store nothing."""

import pytest

from chatmodel_app import ChatModel
from chatmodel_app.exceptions import InvalidMessages, InvalidParams
from chatmodel_app.llm.messages import to_log, to_provider
from chatmodel_app.models import Message
from chatmodel_app.validation import normalise_tools, validate_messages

LIMITS = {"max_messages": 3, "max_chars": 20}


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        ("hello", "must be a list"),
        ({"role": "user", "content": "hi"}, "must be a list"),
        ([], "empty"),
        ([{"role": "user", "content": "x"}] * 4, "too many messages"),
        (["hi"], "must be a dict"),
        ([{"role": "robot", "content": "x"}], "role must be one of"),
        ([{"role": "system", "content": "x"}], "system prompt is the version's"),
        ([{"role": "user", "content": 5}], "content must be a string"),
        ([{"role": "user"}], "content is required"),
        ([{"role": "user", "content": "x" * 21}], "at most 20"),
        ([{"role": "user", "content": "x", "colour": "red"}], "unknown keys: colour"),
        ([{"role": "user", "content": "x", "name": "bad name"}], "name must be"),
        ([{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}], "only assistant"),
        ([{"role": "assistant"}], "needs content, tool_calls"),
        ([{"role": "assistant", "tool_calls": "x"}], "tool_calls must be a non-empty list"),
        ([{"role": "user", "content": "x", "tool_call_id": "c1"}], "only tool/function results"),
    ],
)
def test_invalid_messages(messages, words):
    with pytest.raises(InvalidMessages, match=words):
        validate_messages(messages, **LIMITS)


def test_a_bad_message_stores_nothing(make_chat_model):
    make_chat_model()
    session = ChatModel("simple_assistant")
    with pytest.raises(InvalidMessages):
        session.add_messages([{"role": "user", "content": "fine"}, {"role": "user", "content": None}])
    assert not Message.objects.exists()


def test_roles_can_be_limited():
    with pytest.raises(InvalidMessages, match="not allowed here"):
        validate_messages([{"role": "assistant", "content": "x"}], allowed_roles={"user"}, **LIMITS)


@pytest.mark.parametrize(
    ("tools", "words"),
    [
        ("get_weather", "must be a list"),
        (["x"], "must be a dict"),
        ([{"name": "bad name"}], "name must be"),
        ([{"name": "f", "parameters": {"type": "string"}}], "JSON schema object"),
        ([{"name": "f", "parameters": {"type": "object", "properties": {"a": 1}}}], "schema dict"),
        ([{"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["a"]}}], "required"),
        ([{"type": "retrieval"}], "must be 'function'"),
        ([{"name": "f", "parametres": {}}], "unknown keys: parametres"),
    ],
)
def test_invalid_tools(tools, words):
    with pytest.raises(InvalidParams, match=words):
        normalise_tools(tools=tools)


def test_functions_and_tools_merge_by_name():
    fn = {"name": "f", "description": "old"}
    tool = {"type": "function", "function": {"name": "f", "description": "new"}}
    merged = normalise_tools([fn, {"name": "g"}], [tool])
    assert [t["function"]["name"] for t in merged] == ["f", "g"]
    assert merged[0]["function"]["description"] == "new"
    assert merged[1] == {
        "type": "function",
        "function": {"name": "g", "parameters": {"type": "object", "properties": {}}},
    }


def test_provider_and_log_forms():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call], "name": "", "tool_call_id": ""}
    result = {"role": "function", "content": "13", "name": "f", "tool_call_id": "c1"}
    assert to_provider(assistant) == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert to_provider(result) == {"role": "tool", "tool_call_id": "c1", "content": "13"}
    assert to_log(assistant) == {"role": "assistant", "tool_calls": [call]}
    assert to_log({"role": "user", "content": "hi", "name": "", "tool_calls": None}) == {
        "role": "user",
        "content": "hi",
    }
