"""Prompt variables: declarations checked when a version is saved, values when a session starts, plain substitution."""

from __future__ import annotations

import pytest

from chatmodel_app import ChatModel, services
from chatmodel_app.context.prompt import prompt_render, system_prompt_for
from chatmodel_app.exceptions import InvalidParams
from chatmodel_app.models import ChatModel as ChatModelRow
from chatmodel_app.models import Session, Version
from chatmodel_app.validation import (
    MAX_VARIABLE_CHARS,
    placeholders,
    placeholders_check,
    session_variables_clean,
    variables_declarations_clean,
)

pytestmark = pytest.mark.django_db

PROMPT = "You help {{ customer_name }} of {{company}}. Tone: {{ tone }}."
DECLARED = [
    {"name": "customer_name", "required": True, "description": "Who we talk to"},
    {"name": "company", "default": "ACME"},
    {"name": "tone", "default": "warm"},
]


@pytest.fixture
def support(db) -> ChatModelRow:
    chat_model = ChatModelRow.objects.create(name="support")
    version = services.version_create(
        chat_model=chat_model, system_prompt=PROMPT, model="offline/demo", variables=DECLARED
    )
    services.version_publish(version=version)
    return chat_model


# --- declarations -------------------------------------------------------------------------------------


def test_declarations_are_completed_with_every_key():
    assert variables_declarations_clean(["tone", {"name": "who", "required": True}]) == [
        {"name": "tone", "default": "", "required": False, "description": ""},
        {"name": "who", "default": "", "required": True, "description": ""},
    ]
    assert variables_declarations_clean(None) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"name": "x"}, "must be a list"),
        ("x", "must be a list"),
        ([{"name": "x.__class__"}], "must be an identifier"),
        ([{"name": "{% if %}"}], "must be an identifier"),
        ([{"name": "1st"}], "must be an identifier"),
        ([{"name": "x" * 65}], "must be an identifier"),
        ([{"name": "x"}, {"name": "x"}], "declared twice"),
        ([{"name": "x", "colour": "red"}], "unknown keys: colour"),
        ([{"name": "x", "required": "yes"}], "required must be true or false"),
        ([{"name": "x", "default": 3}], "default must be text"),
        ([{"name": "x", "default": "a\x00b"}], "NUL"),
        ([{"name": "x", "default": "x" * (MAX_VARIABLE_CHARS + 1)}], "characters long"),
        ([{"name": "x", "required": True, "default": "A"}], "required, so it has no default"),
        ([{"name": "x", "description": "d" * 501}], "description must be text of at most 500"),
        ([f"v{i}" for i in range(51)], "at most 50 variables"),
    ],
)
def test_bad_declarations_are_refused(value, message):
    with pytest.raises(InvalidParams, match=message) as caught:
        variables_declarations_clean(value)
    assert caught.value.field == "variables"


def test_every_placeholder_must_be_declared_when_a_version_is_saved(support):
    with pytest.raises(InvalidParams, match=r"uses \{\{ customer \}\}, which is not declared"):
        services.version_create(chat_model=support, system_prompt="Hi {{ customer }}", model="offline/demo")
    assert support.versions.count() == 1
    draft = services.version_create(chat_model=support, system_prompt="Hi.", model="offline/demo")
    with pytest.raises(InvalidParams, match="not declared"):
        services.version_update(version=draft, system_prompt="Hi {{ who }}.")
    # Taking a declaration away from a prompt that uses it is the same mistake.
    used = services.version_create(
        chat_model=support, system_prompt="Hi {{ who }}.", model="offline/demo", variables=["who"]
    )
    with pytest.raises(InvalidParams, match="not declared"):
        services.version_update(version=used, variables=[])
    # Declared but unused is fine; and a copy keeps the declarations.
    copy = services.version_copy(version=used)
    assert copy.variables == [{"name": "who", "default": "", "required": False, "description": ""}]


def test_only_identifiers_in_double_braces_are_placeholders():
    text = "{{ a }} {{b}} {{ a }} {{ x.__class__ }} {{ x|upper }} {% if a %} {{{ c }}} {{ 9 }}"
    assert placeholders(text) == ["a", "b", "c"]
    # A prompt that shows template syntax as text needs no declaration for it.
    placeholders_check("Write {% for x in y %} and {{ x.y }} in Jinja.", [])


# --- substitution ---------------------------------------------------------------------------------------


def test_substitution_is_plain_text_replacement_of_declared_names_only():
    values = {"x": "Ada", "y": "{{ x }}"}
    template = "{{ x }} / {{x}} / {{ y }} / {{ x.__class__ }} / {{ x|upper }} / {% if x %}yes{% endif %} / {{ z }}"
    assert prompt_render(template, values) == (
        "Ada / Ada / {{ x }} / {{ x.__class__ }} / {{ x|upper }} / {% if x %}yes{% endif %} / {{ z }}"
    )
    # A value is inserted as written: never expanded again, never evaluated.
    assert prompt_render("{{ x }}", {"x": "{{ x }}{{ x }}"}) == "{{ x }}{{ x }}"
    assert prompt_render("{{ x }}", {"x": "{% debug %}{{ settings.SECRET_KEY }}"}) == (
        "{% debug %}{{ settings.SECRET_KEY }}"
    )
    # Backslashes and group references in a value are not regex replacement syntax.
    assert prompt_render("{{ x }}", {"x": r"\1 \g<0> \n"}) == r"\1 \g<0> \n"


# --- session values -------------------------------------------------------------------------------------


def test_session_values_are_checked_and_completed_with_defaults():
    declared = variables_declarations_clean(DECLARED)
    assert session_variables_clean(declared, {"customer_name": "Ada"}) == {
        "customer_name": "Ada",
        "company": "ACME",
        "tone": "warm",
    }
    assert session_variables_clean([], None) == {}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "Missing required variable: customer_name"),
        ({"customer_name": ""}, "Missing required variable: customer_name"),
        ({"customer_name": "Ada", "colour": "red"}, "Unknown variables: colour. This version declares: company"),
        ({"customer_name": 42}, "variables.customer_name must be text"),
        ({"customer_name": None}, "variables.customer_name must be text"),
        ({"customer_name": "a\x00"}, "NUL"),
        ({"customer_name": "\ud800"}, "lone surrogate"),
        ({"customer_name": "x" * (MAX_VARIABLE_CHARS + 1)}, "characters long"),
        (["customer_name"], "must be an object"),
    ],
)
def test_bad_session_values_are_refused(values, message):
    with pytest.raises(InvalidParams, match=message) as caught:
        session_variables_clean(variables_declarations_clean(DECLARED), values)
    assert caught.value.field == "variables"


def test_a_version_without_variables_refuses_values():
    with pytest.raises(InvalidParams, match="This version declares no variables"):
        session_variables_clean([], {"x": "1"})


def test_session_create_stores_values_and_refuses_a_missing_required_one(support):
    with pytest.raises(InvalidParams, match="Missing required variable: customer_name"):
        services.session_create(chat_model=support)
    assert not Session.objects.exists()  # nothing half-made
    session = services.session_create(chat_model=support, variables={"customer_name": "Ada", "tone": "dry"})
    session.refresh_from_db()
    assert session.variables == {"customer_name": "Ada", "company": "ACME", "tone": "dry"}
    assert system_prompt_for(session.version, session) == "You help Ada of ACME. Tone: dry."
    # Without a session, the template as written.
    assert system_prompt_for(session.version) == PROMPT


# --- the Python door (ORM transport) ----------------------------------------------------------------------


def test_python_door_renders_the_prompt_the_model_gets(fake_chat_model, fake_llm):
    chat_model = fake_chat_model("support_fake", system_prompt="Hi")
    version = services.version_create(
        chat_model=chat_model,
        system_prompt=PROMPT,
        model="openai/fake-model",
        params={"api_base": fake_llm.url},
        variables=DECLARED,
    )
    services.version_publish(version=version)
    session = ChatModel("support_fake", variables={"customer_name": "Grace"})
    # Before the session exists, get_config shows the template.
    assert session.get_config().system_prompt == PROMPT
    session.add_messages([{"role": "user", "content": "Hello"}])
    res = session.run()
    assert not res.error, res.error_log
    sent = fake_llm.last_request["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "You help Grace of ACME. Tone: warm."}
    # With the session, get_config shows the prompt its runs send.
    assert session.get_config().system_prompt == "You help Grace of ACME. Tone: warm."
    assert ChatModel("support_fake", session.session_uuid).get_config().system_prompt.startswith("You help Grace")


def test_python_door_refuses_a_missing_required_variable_at_session_creation(support):
    session = ChatModel("support")
    with pytest.raises(InvalidParams, match="Missing required variable: customer_name"):
        session.add_messages([{"role": "user", "content": "Hello"}])
    assert not Session.objects.exists()
    # run() never raises: the same refusal comes back as an error response, with no run stored.
    res = ChatModel("support", variables={"nope": "x"}).run()
    assert res.error and res.error_code == "invalid_params"
    assert "Unknown variables: nope" in res.error_log
    assert not Session.objects.exists()


def test_python_door_values_are_set_once(support):
    first = ChatModel("support", variables={"customer_name": "Ada"})
    first.add_messages([{"role": "user", "content": "Hi"}])
    # The same session again: no values, or the same values, are fine.
    ChatModel("support", first.session_uuid).add_messages([{"role": "user", "content": "Again"}])
    same = ChatModel("support", first.session_uuid, variables={"customer_name": "Ada"})
    same.add_messages([{"role": "user", "content": "And again"}])
    other = ChatModel("support", first.session_uuid, variables={"customer_name": "Bob"})
    with pytest.raises(InvalidParams, match="already exists, and its variables were set when it was created"):
        other.add_messages([{"role": "user", "content": "Hi"}])
    assert Session.objects.get().variables["customer_name"] == "Ada"


def test_seed_examples_work_unchanged_on_a_version_without_variables(make_chat_model):
    make_chat_model("simple_assistant")
    session = ChatModel("simple_assistant")
    session.add_messages([{"role": "user", "content": "Hello, I'm a user."}])
    res = session.run()
    assert not res.error and res.content
    assert ChatModel("simple_assistant").get_config().system_prompt == "You are a helpful assistant."


def test_a_legacy_prompt_with_braces_and_no_declarations_is_sent_as_written(db):
    # A version stored before prompt variables existed (no declarations) keeps its text exactly.
    chat_model = ChatModelRow.objects.create(name="legacy")
    Version.objects.create(
        chat_model=chat_model, number=1, system_prompt="Reply as JSON like {{ answer }}.", model="offline/demo"
    )
    session = services.session_create(chat_model=chat_model, version=1)
    assert system_prompt_for(session.version, session) == "Reply as JSON like {{ answer }}."


def test_a_fork_keeps_the_values(support):
    from chatmodel_app.services.branches import session_fork

    session = services.session_create(chat_model=support, variables={"customer_name": "Ada"})
    services.messages_add(session=session, messages=[{"role": "user", "content": "Hi"}])
    fork = session_fork(session=session, seq=1)
    assert fork.variables == {"customer_name": "Ada", "company": "ACME", "tone": "warm"}
