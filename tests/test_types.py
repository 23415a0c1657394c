import json

from chatmodel_app.types import ChatModelConfig, FunctionCall, LLMResponse, LLMStreamResponse, ToolCall


def test_function_call_prints_and_converts_as_the_seed_shows():
    call = FunctionCall(name="get_weather", arguments='{"location": "Boston"}')
    assert str(call) == '{"name": "get_weather", "args": {"location": "Boston"}}'
    assert dict(call) == {"name": "get_weather", "args": {"location": "Boston"}}
    assert call.args == {"location": "Boston"} and call.arguments == '{"location": "Boston"}'
    assert call["name"] == "get_weather"


def test_function_call_with_invalid_json_arguments():
    call = FunctionCall(name="f", arguments="{not json")
    assert call.args == {} and call.arguments == "{not json"


def test_function_call_from_seed_form():
    call = FunctionCall.from_dict({"name": "f", "args": {"a": 1}})
    assert json.loads(call.arguments) == {"a": 1}


def test_tool_call_shortcuts():
    call = ToolCall.from_dict({"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}})
    assert (call.id, call.name, call.args) == ("call_1", "f", {})
    assert call.to_dict() == {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_response_raw_output_and_to_dict():
    res = LLMResponse(content="hi", function_call=FunctionCall("f", "{}"))
    assert res.raw_output == "hi"
    data = res.to_dict()
    assert data["content"] == "hi" and data["function_call"] == {"name": "f", "arguments": "{}"}
    assert json.dumps(data)
    chunk = LLMStreamResponse(content="x", is_final=True)
    assert chunk.raw_output == "x" and chunk.to_dict()["is_final"] is True


def test_config_attributes():
    config = ChatModelConfig(
        system_prompt="S",
        version_detail={"model": "m", "uuid": "u", "version": 3, "name": "n"},
        message_logs=[{"role": "user", "content": "hi"}],
    )
    assert (config.model, config.version_uuid, config.version, config.name) == ("m", "u", 3, "n")
    assert config.to_dict()["message_logs"] == [{"role": "user", "content": "hi"}]


def test_parsed_outputs_is_none_as_promptmodel_code_expects_for_a_version_that_parses_nothing():
    assert LLMResponse(content="hi").parsed_outputs is None
    assert LLMStreamResponse(content="x", is_final=True).parsed_outputs is None
    # A server's JSON rebuilds the same response; the wire format has no such key.
    rebuilt = LLMResponse.from_dict(LLMResponse(content="hi").to_dict())
    assert rebuilt.parsed_outputs is None and "parsed_outputs" not in LLMResponse().to_dict()
    parsed = {"answer": "hi"}
    assert LLMResponse.from_dict({"content": "hi", "parsed_outputs": parsed}).parsed_outputs == parsed
