"""The input rules of ``chatmodel_app.validation`` directly, and the error-code registry they raise into."""

from __future__ import annotations

import inspect

import pytest

from chatmodel_app import exceptions, validation
from chatmodel_app.exceptions import (
    ERROR_CODES,
    ChatModelError,
    InvalidMessages,
    InvalidParams,
    SessionNotFound,
    SessionOfOtherChatModel,
    exception_for_code,
    http_status,
)
from chatmodel_app.models import Version

LIMITS = {"max_messages": 10, "max_chars": 1000}


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# --- json_check / text_check ---------------------------------------------------------------------


def test_json_nesting_is_bounded_at_exactly_max_depth():
    validation.json_check(nested(validation.MAX_JSON_DEPTH), "metadata", InvalidMessages)
    with pytest.raises(InvalidMessages, match="nested more than 32 levels deep") as raised:
        validation.json_check(nested(validation.MAX_JSON_DEPTH + 1), "metadata", InvalidMessages)
    assert raised.value.field == "metadata"


def test_json_check_survives_any_depth():
    # Deeper than Python's recursion limit: a recursive walk would raise RecursionError.
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidParams, match="nested"):
        validation.json_check(deep, "tools[0]", InvalidParams)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a\x00b", "NUL character"),
        ({"k\x00": 1}, "NUL character"),
        (["ok", {"deep": "x\x00"}], "NUL character"),
        ("\ud800", "lone surrogate"),
        ({"\udfff": 1}, "lone surrogate"),
        ({1: "a"}, "key that is not a string"),
        (float("nan"), "not valid JSON"),
        ({"when": object()}, "not a JSON value"),
    ],
)
def test_json_check_refuses_what_cannot_be_stored_or_sent(value, message):
    with pytest.raises(InvalidMessages, match=message):
        validation.json_check(value, "messages[0].metadata", InvalidMessages)


def test_json_check_counts_size():
    validation.json_check({"k": "x" * 50}, "metadata", InvalidParams, max_chars=100)
    with pytest.raises(InvalidParams, match="larger than 100 characters as JSON"):
        validation.json_check({"k": "x" * 200}, "metadata", InvalidParams, max_chars=100)


def test_a_field_level_message_names_no_location():
    with pytest.raises(InvalidParams) as raised:
        validation.json_check({"k": "x" * 200}, "", InvalidParams, max_chars=20)
    assert str(raised.value) == "Larger than 20 characters as JSON."


def test_plain_text_passes():
    validation.text_check("Grüße, 你好, 🙂 and a\ttab", "content", InvalidMessages)


# --- run parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(validation.PARAM_RANGES))
def test_parameter_ranges_are_inclusive(name):
    low, high = validation.PARAM_RANGES[name]
    blank = Version(params={})
    assert validation.validate_run_params({name: low}, blank) == {name: low}
    assert validation.validate_run_params({name: high}, blank) == {name: high}
    for bad in (low - 0.01, high + 0.01, True, "1"):
        with pytest.raises(InvalidParams) as raised:
            validation.validate_run_params({name: bad}, blank)
        assert raised.value.field == name


def test_caller_may_not_set_provider_settings(settings):
    with pytest.raises(InvalidParams, match="api_base, model") as raised:
        validation.validate_run_params(
            {"model": "gpt-4o", "api_base": "http://x", "temperature": 1}, Version(params={})
        )
    assert raised.value.field == "api_base"
    settings.CHATMODEL_ALLOWED_PARAMS = ["temperature"]
    assert validation.params_refused(["temperature", "top_p"]) == ["top_p"]


def test_max_tokens_is_capped_by_the_version():
    version = Version(params={"max_tokens": 100})
    assert validation.validate_run_params({"max_tokens": 100}, version) == {"max_tokens": 100}
    with pytest.raises(InvalidParams, match="at most 100"):
        validation.validate_run_params({"max_tokens": 101}, version)
    with pytest.raises(InvalidParams, match="n must be 1"):
        validation.validate_run_params({"n": 2}, version)


def test_run_request_params_are_everything_but_the_run_options():
    request = {"stream": True, "functions": [], "tools": [], "temperature": 0.5, "api_base": "x"}
    assert validation.run_request_params(request) == {"temperature": 0.5, "api_base": "x"}


# --- tools ---------------------------------------------------------------------------------------


def test_validate_tools_checks_the_json_schema_and_names_the_field():
    bad = {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "nope"}}}}
    # normalise_tools only checks the shape; validate_tools also checks the JSON Schema.
    assert validation.normalise_tools(functions=[bad])[0]["function"]["name"] == "f"
    with pytest.raises(InvalidParams, match="not a valid JSON Schema") as raised:
        validation.validate_tools(functions=[bad])
    assert raised.value.field == "functions"
    with pytest.raises(InvalidParams) as raised:
        validation.validate_tools(tools=[{"type": "function", "function": bad}])
    assert raised.value.field == "tools"


def test_validate_tools_merges_functions_and_tools():
    fn = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}
    out = validation.validate_tools([fn], [{"type": "function", "function": {"name": "g"}}])
    assert [t["function"]["name"] for t in out] == ["f", "g"]
    assert all(t["type"] == "function" for t in out)


def test_a_deep_schema_is_refused_before_the_schema_check():
    schema: dict = {"type": "string"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(InvalidParams, match="nested more than") as raised:
        validation.validate_tools(tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}])
    assert raised.value.field == "tools"


def test_all_tools_together_are_bounded():
    big = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 900} for i in range(60)}}
    tools = [{"name": f"f{i}", "parameters": big} for i in range(6)]
    with pytest.raises(InvalidParams, match="together are larger than"):
        validation.validate_tools(functions=tools)


# --- messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({"role": ["user"], "content": "Hi"}, "role must be a string"),
        ({"role": None, "content": "Hi"}, "role must be a string"),
        ({"role": "user", "content": "a\x00"}, r"messages\[0\].content: contains a NUL"),
        ({"role": "user", "content": "\ud800"}, "lone surrogate"),
        ({"role": "user", "content": "Hi", "metadata": {"a": nested(40)}}, "nested more than"),
        ({"role": "user", "content": "Hi", "metadata": {"a": "x" * 2000}}, "larger than 1000"),
        (
            {"role": "assistant", "tool_calls": [{"id": "c\x00", "function": {"name": "f", "arguments": "{}"}}]},
            "NUL",
        ),
        (
            {"role": "assistant", "function_call": {"name": "f", "arguments": {"a": nested(40)}}},
            "arguments: nested",
        ),
        ({"role": "assistant", "function_call": {"name": "f", "arguments": "x" * 2000}}, "larger than 1000"),
    ],
)
def test_messages_refuse_bad_text_depth_and_size(message, match):
    with pytest.raises(InvalidMessages, match=match):
        validation.validate_messages([message], allowed_roles={"user", "assistant"}, **LIMITS)


# --- versions ------------------------------------------------------------------------------------


def test_truncation_choices_are_the_models():
    assert set(Version.Truncation.values) == {"auto", "last_messages", "summary"}
    assert validation.version_field_clean("truncation", Version.Truncation.SUMMARY) == "summary"
    with pytest.raises(InvalidParams, match="truncation must be one of auto, last_messages, summary"):
        validation.version_field_clean("truncation", "newest")
    with pytest.raises(InvalidParams, match="needs truncation_last_messages"):
        validation.version_fields_clean({"truncation": "last_messages", "truncation_last_messages": None})
    validation.check_truncation("last_messages", 5)


def test_version_params_refuse_keys_and_bad_ranges():
    with pytest.raises(InvalidParams, match="provider keys"):
        validation.version_params_validate({"api_key": "sk-x"})
    with pytest.raises(InvalidParams, match="provider keys"):
        validation.version_params_validate({"my_secret": "x"})
    with pytest.raises(InvalidParams, match="temperature"):
        validation.version_params_validate({"temperature": 9})
    # A version may set what a caller may not (its own api_base).
    assert validation.version_params_validate({"api_base": "http://x", "temperature": 1}) == {
        "api_base": "http://x",
        "temperature": 1,
    }


def test_version_tools_get_the_json_schema_check():
    with pytest.raises(InvalidParams, match="not a valid JSON Schema"):
        validation.version_field_clean("tools", {"name": "f", "parameters": {"type": "object", "minProperties": -1}})


def test_version_text_fields_refuse_nul():
    with pytest.raises(InvalidParams, match="NUL"):
        validation.version_field_clean("system_prompt", "You are\x00 helpful.")


def test_ratios_clean():
    assert validation.ratios_clean({"1": 1, 2: 0.5}) == {1: 1.0, 2: 0.5}
    for bad in ({}, {"x": 1}, {1: 0}, {1: float("inf")}, {1: True}):
        with pytest.raises(InvalidParams):
            validation.ratios_clean(bad)


# --- the error-code registry ---------------------------------------------------------------------


def test_every_domain_exception_is_registered_under_its_code():
    classes = [
        cls
        for _, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, ChatModelError) and cls is not ChatModelError
    ]
    for cls in classes:
        assert cls.code in ERROR_CODES, cls
        assert issubclass(cls, exception_for_code(cls.code)), cls


def test_codes_map_to_exceptions_and_statuses():
    assert exception_for_code("invalid_params") is InvalidParams
    assert exception_for_code("session_not_found") is SessionNotFound
    assert exception_for_code("no_such_code") is None
    assert http_status("invalid_messages") == 400
    assert http_status("request_too_large") == 413
    assert http_status("no_such_code") == 400
    # By type: a subclass has its parent's status, and a code given at raise time wins.
    assert http_status(SessionOfOtherChatModel("x")) == 404
    assert http_status(ChatModelError("x", code="version_in_use")) == 409
    assert http_status(ChatModelError("x")) == 400
