"""The version editor: validation, saving, save as new, read-only once used, copies."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.admin.models import LogEntry

from chatmodel_app import services
from chatmodel_app.exceptions import ChatModelError
from chatmodel_app.models import Version

from .helpers import WEATHER, editor_data, errors_of, url

pytestmark = pytest.mark.django_db


def test_editor_shows_prompt_in_monospace_area_and_model_suggestions(admin_client, v1):
    response = admin_client.get(url("version_change", v1.pk))
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'<textarea[^>]*name="system_prompt"[^>]*class="chatmodel-code chatmodel-prompt"', html)
    assert 'list="chatmodel-known-models"' in html
    assert f'data-src="{url("version_known_models")}"' in html
    assert "chatmodel_app/admin/admin.css" in html


def test_known_models_lists_offline_model_first_then_litellm_chat_models(admin_client):
    response = admin_client.get(url("version_known_models"))
    models = response.json()["models"]
    assert models[0] == "offline/demo"
    assert "gpt-4o-mini" in models
    assert "text-embedding-3-small" not in models  # not a chat model


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("params", '{"temperature": 0.7,}', "This is not valid JSON"),
        ("params", '{"temperature": 5}', "temperature must be a number from 0.0 to 2.0; got 5."),
        ("params", "[1, 2]", "params must be a JSON object"),
        ("params", '{"api_key": "sk-123"}', "params must not hold provider keys (api_key)"),
        ("params", '{"max_tokens": 0}', "max_tokens must be a positive integer; got 0."),
        ("tools", '[{"name": "get weather"}]', "tools[0].name must be 1-64 letters, digits"),
        ("tools", '[{"name": "f", "parameters": {"type": "string"}}]', "tools[0].parameters must be a JSON schema"),
        (
            "tools",
            '[{"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["x"]}}]',
            "tools[0].parameters.required must list names defined in properties",
        ),
        ("tools", '"get_weather"', "tools must be a list of JSON schemas"),
        ("model", "  ", "This field is required"),
        ("truncation", "last_messages", "Say how many of the newest messages to keep."),
    ],
)
def test_editor_explains_invalid_input_and_saves_nothing(admin_client, v1, field, value, message):
    before = Version.objects.get(pk=v1.pk)
    response = admin_client.post(url("version_change", v1.pk), editor_data(**{field: value}))
    assert response.status_code == 200  # the form again, not a redirect
    assert message in errors_of(response).replace("&#x27;", "'").replace("&quot;", '"')
    after = Version.objects.get(pk=v1.pk)
    assert (after.params, after.tools, after.model, after.truncation) == (
        before.params,
        before.tools,
        before.model,
        before.truncation,
    )


def test_json_syntax_error_says_where(admin_client, v1):
    response = admin_client.post(
        url("version_change", v1.pk), editor_data(params='{\n  "temperature": 0.7\n  "top_p": 1\n}')
    )
    assert "at line 3, column 3" in errors_of(response)


def test_editor_saves_a_draft_in_place_with_clean_values(admin_client, v1):
    tools = json.dumps([{"type": "function", "function": WEATHER}])
    response = admin_client.post(
        url("version_change", v1.pk),
        editor_data(
            system_prompt="Be brief.",
            params='{"temperature": 0.2, "max_tokens": 300}',
            tools=tools,
            tags="formal, test",
            fallbacks="offline/demo\n\n",
            truncation="last_messages",
            truncation_last_messages="20",
        ),
    )
    assert response.status_code == 302
    v1.refresh_from_db()
    assert v1.system_prompt == "Be brief."
    assert v1.params == {"temperature": 0.2, "max_tokens": 300}
    assert v1.tools == [{"type": "function", "function": WEATHER}]
    assert (v1.tags, v1.fallbacks) == (["formal", "test"], ["offline/demo"])
    assert (v1.truncation, v1.truncation_last_messages) == ("last_messages", 20)
    assert LogEntry.objects.filter(object_id=str(v1.pk)).exists()


def test_a_bare_function_schema_is_accepted_as_a_list_of_one(admin_client, v1):
    response = admin_client.post(url("version_change", v1.pk), editor_data(tools=json.dumps(WEATHER)))
    assert response.status_code == 302
    v1.refresh_from_db()
    assert v1.tools == [{"type": "function", "function": WEATHER}]


def test_add_version_numbers_it_and_records_the_author(admin_client, admin_user, chat_model):
    response = admin_client.get(url("version_add") + f"?chat_model={chat_model.pk}")
    assert response.status_code == 200
    # A new version starts from the newest one.
    assert "You are a helpful assistant." in response.content.decode()
    response = admin_client.post(
        url("version_add"), editor_data(chat_model=str(chat_model.pk), system_prompt="v2 prompt", memo="Shorter.")
    )
    version = chat_model.versions.get(number=2)
    assert response.status_code == 302 and response["Location"] == url("version_change", version.pk)
    assert (version.system_prompt, version.memo, version.created_by, version.is_published) == (
        "v2 prompt",
        "Shorter.",
        admin_user,
        False,
    )


def test_save_as_new_version_copies_the_edits_and_leaves_the_original(admin_client, admin_user, v1):
    response = admin_client.post(
        url("version_change", v1.pk),
        editor_data(system_prompt="A new idea.", params='{"temperature": 1}', _save_as_new_version="1"),
    )
    new = Version.objects.get(chat_model=v1.chat_model, number=2)
    assert response.status_code == 302 and response["Location"] == url("version_change", new.pk)
    assert (new.system_prompt, new.params, new.created_by, new.is_published) == (
        "A new idea.",
        {"temperature": 1},
        admin_user,
        False,
    )
    assert new.memo == "Copy of v1."
    v1.refresh_from_db()
    assert (v1.system_prompt, v1.params) == ("You are a helpful assistant.", {})


def test_save_as_new_with_invalid_edits_shows_errors_and_creates_nothing(admin_client, v1):
    response = admin_client.post(url("version_change", v1.pk), editor_data(params="{oops", _save_as_new_version="1"))
    assert response.status_code == 200
    assert "This is not valid JSON" in errors_of(response)
    assert Version.objects.filter(chat_model=v1.chat_model).count() == 1


def test_a_version_that_served_a_session_is_read_only_and_says_why(admin_client, v1):
    services.session_create(chat_model=v1.chat_model, version=v1)
    response = admin_client.get(url("version_change", v1.pk))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="version-read-only"' in html
    assert "it has served" in html
    assert 'name="_save"' not in html and 'name="system_prompt"' not in html
    assert 'data-testid="copy-version"' in html

    response = admin_client.post(url("version_change", v1.pk), editor_data(system_prompt="Changed."))
    assert response.status_code == 403
    v1.refresh_from_db()
    assert v1.system_prompt == "You are a helpful assistant."

    with pytest.raises(ChatModelError) as info:
        services.version_update(version=v1, system_prompt="Changed.")
    assert info.value.code == "version_in_use"

    # Nor can it be deleted.
    assert admin_client.post(url("version_delete", v1.pk), {"post": "yes"}).status_code == 403


def test_the_copy_button_makes_a_new_draft_of_a_used_version(admin_client, v1):
    services.session_create(chat_model=v1.chat_model, version=v1)
    response = admin_client.post(url("version_copy", v1.pk))
    new = Version.objects.get(chat_model=v1.chat_model, number=2)
    assert response["Location"] == url("version_change", new.pk)
    assert new.system_prompt == v1.system_prompt and not new.is_published
    page = admin_client.get(response["Location"]).content.decode()
    assert "Saved as new draft simple_assistant v2 (from v1, which is unchanged)." in page
    assert 'name="system_prompt"' in page  # the copy is editable


def test_save_as_new_on_a_used_version_copies_it(admin_client, v1):
    services.session_create(chat_model=v1.chat_model, version=v1)
    response = admin_client.post(url("version_change", v1.pk), {"_save_as_new_version": "1"})
    assert response.status_code == 302
    assert Version.objects.filter(chat_model=v1.chat_model, number=2).exists()


def test_a_version_used_while_being_edited_is_not_changed(admin_client, v1, monkeypatch):
    # The session arrives between the form's validation and the save: the service refuses, the page says so.
    real = services.version_update

    def used_meanwhile(**kwargs):
        services.session_create(chat_model=v1.chat_model, version=v1)
        return real(**kwargs)

    monkeypatch.setattr(services, "version_update", used_meanwhile)
    response = admin_client.post(url("version_change", v1.pk), editor_data(system_prompt="Changed."), follow=True)
    assert "has served sessions, so it is read-only" in response.content.decode()
    v1.refresh_from_db()
    assert v1.system_prompt == "You are a helpful assistant."


def test_a_new_version_with_nothing_to_start_from_shows_empty_json_not_null(admin_client):
    html = admin_client.get(url("version_add")).content.decode()
    shown = {
        name: re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', html, re.S).group(1).strip()
        for name in ("params", "tools")
    }
    assert shown == {"params": "{}", "tools": ""}  # empty tools show the example placeholder
