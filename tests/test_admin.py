"""The admin as a prompt-engineering workspace, through Django's test client: what a prompt engineer sees."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from chatmodel_app import services
from chatmodel_app.exceptions import ChatModelError
from chatmodel_app.models import ChatModel, Message, PublishRecord, Run, Session, Version

pytestmark = pytest.mark.django_db

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # admin_user's password is hashed on creation: the default hasher's cost is a second a test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(name: str, *args) -> str:
    return reverse(f"admin:chatmodel_app_{name}", args=args)


def editor_data(**overrides) -> dict[str, str]:
    """What the version editor posts, with every field as a person would leave it."""
    data = {
        "model": "offline/demo",
        "system_prompt": "You are a helpful assistant.",
        "params": "{}",
        "tools": "[]",
        "truncation": "auto",
        "truncation_last_messages": "",
        "context_window": "",
        "summary_model": "",
        "fallbacks": "",
        "memo": "",
        "tags": "",
    }
    data.update(overrides)
    return data


def errors_of(response) -> str:
    """The text of the form's error lists on a rendered admin page."""
    return " ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S))


@pytest.fixture
def chat_model(make_chat_model) -> ChatModel:
    return make_chat_model("simple_assistant", system_prompt="You are a helpful assistant.")


@pytest.fixture
def v1(chat_model) -> Version:
    return chat_model.versions.get(number=1)


@pytest.fixture
def staff(db):
    """A staff user who may view and edit versions, but not publish them."""
    user = get_user_model().objects.create_user("editor", password="pw", is_staff=True)
    codenames = ["view_chatmodel", "change_chatmodel", "view_version", "add_version", "change_version"]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="chatmodel_app", codename__in=codenames)
    )
    return user


def draft(chat_model: ChatModel, prompt: str = "Draft prompt.", **fields) -> Version:
    return services.version_draft_create(chat_model=chat_model, system_prompt=prompt, model="offline/demo", **fields)


# --- the version editor ------------------------------------------------------------------------------


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


def test_chat_model_page_lists_versions_with_links(admin_client, admin_user, chat_model):
    services.version_draft_create(
        chat_model=chat_model, model="gpt-4o-mini", system_prompt="x", memo="Try mini.", created_by=admin_user
    )
    response = admin_client.get(url("chatmodel_change", chat_model.pk))
    html = response.content.decode()
    v2 = chat_model.versions.get(number=2)
    table = html[html.index('data-testid="version-table"') :]
    assert f'href="{url("version_change", v2.pk)}">v2</a>' in table
    row = table[table.index('data-version="2"') :]
    row = row[: row.index("</tr>")]
    for text in ("gpt-4o-mini", "draft", "admin", "Try mini."):
        assert text in row
    row1 = table[table.index('data-version="1"') :]
    assert "published" in row1[: row1.index("</tr>")]


# --- save as new, read-only once used ----------------------------------------------------------------


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


# --- publishing ------------------------------------------------------------------------------------


def publish_action(client, versions, **extra):
    data = {"action": "publish_selected", "_selected_action": [str(v.pk) for v in versions], **extra}
    return client.post(url("version_changelist"), data)


def test_publishing_one_version_unpublishes_the_others_and_is_recorded(admin_client, admin_user, v1):
    v2 = draft(v1.chat_model)
    response = publish_action(admin_client, [v2])
    assert response.status_code == 200  # the confirmation page first
    html = response.content.decode()
    assert "v1" in html and "keep serving it" in html
    assert not Version.objects.get(pk=v2.pk).is_published

    response = publish_action(admin_client, [v2], apply="1")
    assert response.status_code == 302
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.is_published, v2.is_published, v2.ratio) == (False, True, 1.0)
    records = {(r.version.number, r.action, r.ratio, r.user) for r in PublishRecord.objects.all()}
    assert records == {(2, "publish", 1.0, admin_user), (1, "unpublish", None, admin_user)}
    # The admin's history of the version and of the chat model say who did what.
    version_history = admin_client.get(url("version_history", v2.pk)).content.decode()
    assert "Published (A/B ratio 1), replacing v1." in version_history
    model_history = admin_client.get(url("chatmodel_history", v1.chat_model.pk)).content.decode()
    assert "Published v2 (A/B ratio 1); unpublished v1." in model_history
    page = admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    history = page[page.index('data-testid="publish-history"') :]
    assert "Publish" in history and "Unpublish" in history and "admin" in history


def test_ab_ratios_publish_several_versions(admin_client, v1):
    v2, v3 = draft(v1.chat_model), draft(v1.chat_model)
    response = publish_action(admin_client, [v2, v3], apply="1", **{f"ratio_{v2.pk}": "3", f"ratio_{v3.pk}": "1"})
    assert response.status_code == 302
    live = dict(Version.objects.filter(is_published=True).values_list("number", "ratio"))
    assert live == {2: 3.0, 3: 1.0}


def test_keeping_a_published_version_for_an_ab_test(admin_client, v1):
    v2 = draft(v1.chat_model)
    response = admin_client.post(
        url("version_publish", v2.pk),
        {"apply": "1", f"ratio_{v2.pk}": "0.2", f"keep_{v1.pk}": "on", f"ratio_{v1.pk}": "0.8"},
    )
    assert response.status_code == 302
    assert dict(Version.objects.filter(is_published=True).values_list("number", "ratio")) == {1: 0.8, 2: 0.2}
    # v1 kept serving (at a new ratio): nothing was unpublished.
    assert {(r.version.number, r.action, r.ratio) for r in PublishRecord.objects.all()} == {
        (1, "publish", 0.8),
        (2, "publish", 0.2),
    }


@pytest.mark.parametrize(
    ("ratio", "message"),
    [
        ("0", "An A/B ratio must be more than 0"),
        ("-1", "Ensure this value is greater than or equal to 0"),
        ("abc", "Enter a number"),
    ],
)
def test_invalid_ab_ratios_are_explained_and_nothing_changes(admin_client, v1, ratio, message):
    v2 = draft(v1.chat_model)
    response = admin_client.post(
        url("version_publish", v2.pk),
        {"apply": "1", f"ratio_{v2.pk}": "1", f"keep_{v1.pk}": "on", f"ratio_{v1.pk}": ratio},
    )
    assert response.status_code == 200
    assert message in errors_of(response)
    assert list(Version.objects.filter(is_published=True).values_list("number", flat=True)) == [1]
    assert not PublishRecord.objects.exists()


def test_a_kept_version_needs_a_ratio(admin_client, v1):
    v2 = draft(v1.chat_model)
    response = admin_client.post(
        url("version_publish", v2.pk), {"apply": "1", f"keep_{v1.pk}": "on", f"ratio_{v1.pk}": ""}
    )
    assert "Give simple_assistant v1 an A/B ratio to keep it published." in errors_of(response)


def test_service_refuses_bad_ratios():
    with pytest.raises(ChatModelError, match="must be a positive number"):
        services._ratios_clean({1: float("nan")})
    with pytest.raises(ChatModelError, match="at least one version"):
        services._ratios_clean({})


def test_unpublish_action(admin_client, v1):
    response = admin_client.post(
        url("version_changelist"), {"action": "unpublish_selected", "_selected_action": [str(v1.pk)]}
    )
    assert response.status_code == 302
    v1.refresh_from_db()
    assert not v1.is_published
    assert PublishRecord.objects.get().action == "unpublish"


def test_publishing_needs_the_publish_permission(client, staff, v1):
    v2 = draft(v1.chat_model)
    client.force_login(staff)
    changelist = client.get(url("version_changelist")).content.decode()
    assert "publish_selected" not in changelist and "unpublish_selected" not in changelist
    assert client.get(url("version_publish", v2.pk)).status_code == 403
    assert client.post(url("version_publish", v2.pk), {"apply": "1"}).status_code == 403
    publish_action(client, [v2], apply="1")
    client.post(url("version_changelist"), {"action": "unpublish_selected", "_selected_action": [str(v1.pk)]})
    assert list(Version.objects.filter(is_published=True)) == [v1]
    assert 'data-testid="publish-version"' not in client.get(url("version_change", v2.pk)).content.decode()

    staff.user_permissions.add(Permission.objects.get(codename="publish_version"))
    staff = get_user_model().objects.get(pk=staff.pk)  # drop the permission cache
    client.force_login(staff)
    assert 'data-testid="publish-version"' in client.get(url("version_change", v2.pk)).content.decode()
    assert client.post(url("version_publish", v2.pk), {"apply": "1"}).status_code == 302
    assert list(Version.objects.filter(is_published=True)) == [v2]
    assert PublishRecord.objects.filter(action="publish").get().user == staff


# --- diff ------------------------------------------------------------------------------------------


def test_diff_shows_two_versions_side_by_side(admin_client, v1):
    prompt = "\n".join(f"Rule {i}." for i in range(1, 21))
    a = draft(v1.chat_model, prompt + "\nBe polite.", params={"temperature": 0.5})
    b = draft(v1.chat_model, prompt + "\nBe very polite.", params={"temperature": 0.9}, tools=[WEATHER])
    Version.objects.filter(pk=b.pk).update(model="gpt-4o-mini")
    response = admin_client.get(url("chatmodel_diff", v1.chat_model.pk) + f"?a={a.number}&b={b.number}")
    html = response.content.decode()
    assert response.status_code == 200
    prompt_section = html[html.index('data-testid="diff-system_prompt"') : html.index('data-testid="diff-settings"')]
    assert re.search(r"Be<ins>\s*very\s*</ins>\s*polite", prompt_section)  # the word that changed
    assert "unchanged lines" in prompt_section  # the 20 equal rules fold
    settings = html[html.index('data-testid="diff-settings"') : html.index('data-testid="diff-params"')]
    assert re.search(
        r'<tr class="changed">\s*<th[^>]*>Model</th>\s*'
        r'<td class="code">offline/demo</td>\s*<td class="code">gpt-4o-mini</td>',
        settings,
    )
    params = html[html.index('data-testid="diff-params"') : html.index('data-testid="diff-tools"')]
    assert "0.<del>5</del>" in params and "0.<ins>9</ins>" in params
    assert "get_weather" in html[html.index('data-testid="diff-tools"') :]


def test_diff_defaults_to_the_newest_two_and_reports_missing_versions(admin_client, v1):
    draft(v1.chat_model, "second")
    response = admin_client.get(url("chatmodel_diff", v1.chat_model.pk))
    assert response.status_code == 200 and 'value="1"' in response.content.decode()
    assert 'value="2"' in response.content.decode()
    response = admin_client.get(url("chatmodel_diff", v1.chat_model.pk) + "?a=1&b=9")
    assert response.status_code == 404
    assert "has no version v9" in response.content.decode()


def test_compare_action_opens_the_diff(admin_client, v1):
    v2 = draft(v1.chat_model)
    response = admin_client.post(
        url("version_changelist"), {"action": "compare_selected", "_selected_action": [str(v1.pk), str(v2.pk)]}
    )
    assert response["Location"] == url("chatmodel_diff", v1.chat_model.pk) + "?a=1&b=2"


# --- sessions and runs -----------------------------------------------------------------------------


def add_run(session: Session, *, status="completed", prompt=10, completion=5, cost=0.001, **fields) -> Run:
    return Run.objects.create(
        session=session,
        version=session.version,
        status=status,
        model=session.version.model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        latency_ms=120,
        time_to_first_token_ms=40,
        **fields,
    )


@pytest.fixture
def conversation(v1, admin_user):
    """A session with a user turn, a function call, its result, a reply, and a failed run."""
    session = services.session_create(chat_model=v1.chat_model, version=v1, user=admin_user)
    services.messages_add(session=session, messages=[{"role": "user", "content": "Weather in Boston?"}])
    call_run = add_run(session)
    Message.objects.create(
        session=session,
        seq=2,
        role="assistant",
        content=None,
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Boston"}'},
            }
        ],
        run=call_run,
        token_count=12,
    )
    Message.objects.create(
        session=session, seq=3, role="tool", content="13 degrees", tool_call_id="call_1", name="get_weather"
    )
    reply_run = add_run(session, prompt=30, completion=8, cost=0.002)
    Message.objects.create(
        session=session, seq=4, role="assistant", content="It is 13 degrees in Boston.", run=reply_run
    )
    add_run(
        session,
        status="failed",
        prompt=None,
        completion=None,
        cost=None,
        error="rate_limit",
        error_log="Slow down.",
        last_seq=4,
    )
    Session.objects.filter(pk=session.pk).update(next_seq=5, summary="They asked about Boston.", summary_until_seq=1)
    session.refresh_from_db()
    return session


def test_session_page_shows_the_conversation_in_order(admin_client, conversation):
    response = admin_client.get(url("session_change", conversation.pk))
    html = response.content.decode()
    assert response.status_code == 200
    order = [html.index(f'id="message-{seq}"') for seq in (1, 2, 3, 4)]
    assert order == sorted(order)
    assert "Weather in Boston?" in html and "It is 13 degrees in Boston." in html
    assert "get_weather({&quot;location&quot;: &quot;Boston&quot;})" in html  # the function call
    assert "answers call_1" in html
    assert "30 in / 8 out" in html and "$0.002000" in html  # tokens and cost of the reply's run
    assert "They asked about Boston." in html  # the summary
    failed = html[html.index('data-testid="failed-run"') :]
    assert "rate_limit" in failed and html.index('data-testid="failed-run"') > order[-1]
    totals = html[html.index('data-testid="session-totals"') :]
    assert "3 runs" in totals and "1 failed" in totals and "40 prompt + 13 completion tokens" in totals
    assert 'name="_save"' not in html  # read-only


def test_session_list_filters_and_search(admin_client, conversation, v1, admin_user):
    other_model = ChatModel.objects.create(name="other")
    other_version = draft(other_model)
    quiet = services.session_create(chat_model=other_model, version=other_version)
    playground = services.session_create(chat_model=v1.chat_model, version=v1, user=admin_user, is_playground=True)
    old = services.session_create(chat_model=v1.chat_model, version=v1)
    Session.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    def listed(query: str = "") -> set:
        html = admin_client.get(url("session_changelist") + query).content.decode()
        return {s for s in (conversation, quiet, playground, old) if str(s.uuid) in html}

    assert listed() == {conversation, quiet, old}  # playground sessions hidden by default
    assert listed("?playground=only") == {playground}
    assert listed("?playground=all") == {conversation, quiet, playground, old}
    assert listed(f"?chat_model__id__exact={other_model.pk}") == {quiet}
    assert listed(f"?chat_model__id__exact={v1.chat_model.pk}&version={v1.pk}") == {conversation, old}
    assert listed(f"?user__id__exact={admin_user.pk}") == {conversation}
    assert listed("?failed_runs=yes") == {conversation}
    assert listed("?failed_runs=no") == {quiet, old}
    since = urlencode({"created_at__gte": (timezone.now() - timedelta(days=7)).isoformat()})
    assert listed(f"?{since}") == {conversation, quiet}
    assert listed(f"?q={conversation.uuid}") == {conversation}
    assert listed(f"?q={admin_user.username}") == {conversation}
    assert listed(f"?q={playground.uuid}") == {playground}  # a uuid search finds playground sessions too
    # The version filter offers the chosen chat model's versions.
    page = admin_client.get(url("session_changelist") + f"?chat_model__id__exact={v1.chat_model.pk}").content.decode()
    assert f"?chat_model__id__exact={v1.chat_model.pk}&amp;version={v1.pk}" in page


def test_run_list_and_usage_summary(admin_client, conversation, v1):
    old = add_run(conversation, prompt=1000, completion=1000, cost=1.0)
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    playground = services.session_create(chat_model=v1.chat_model, version=v1, is_playground=True)
    add_run(playground, status="failed", error="timeout")
    response = admin_client.get(url("run_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "rate_limit" in html and "timeout" not in html.split('id="changelist"')[1]  # playground hidden
    for value in ("120", "40", "completed", "failed"):
        assert value in html
    usage = html[
        html.index('data-testid="usage-summary"') : html.index("</table>", html.index('data-testid="usage-summary"'))
    ]
    cells = re.findall(r'<td class="num">([^<]*)</td>', usage)
    # 7 days: 4 runs (one in the playground), 2 failed, 15+38+15 tokens, $0.004; 30 days adds the old run.
    assert cells == ["4", "2", "68", "$0.0040", "5", "2", "2068", "$1.0040"]
    run = Run.objects.get(error="rate_limit")
    detail = admin_client.get(url("run_change", run.pk)).content.decode()
    assert "Slow down." in detail and str(conversation.uuid) in detail
    found = admin_client.get(url("run_changelist") + f"?q={conversation.uuid}").content.decode()
    assert found.count('class="field-short_uuid"') == 4


def test_chat_model_page_shows_usage(admin_client, conversation, v1):
    html = admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    usage = html[html.index('data-testid="usage-summary"') :]
    assert re.findall(r'<td class="num">([^<]*)</td>', usage)[:4] == ["3", "1", "53", "$0.0030"]


# --- playground ------------------------------------------------------------------------------------


def test_playground_starts_a_marked_session_on_a_draft(admin_client, admin_user, v1):
    v2 = draft(v1.chat_model, "Draft under test.")
    page = admin_client.get(url("version_change", v2.pk)).content.decode()
    assert f'action="{url("version_playground", v2.pk)}"' in page
    response = admin_client.post(url("version_playground", v2.pk))
    session = Session.objects.get()
    assert response["Location"] == url("version_playground_session", v2.pk, session.uuid)
    assert (session.version, session.is_playground, session.user) == (v2, True, admin_user)
    html = admin_client.get(response["Location"]).content.decode()
    for testid in ("playground-input", "playground-send", "playground-messages", "playground-status"):
        assert f'data-testid="{testid}"' in html
    assert f"/ws/chatmodel/sessions/{session.uuid}/" in html
    assert "Draft under test." in html


def test_playground_shows_earlier_turns_with_tokens_and_cost(admin_client, admin_user, v1):
    session = services.session_create(chat_model=v1.chat_model, version=v1, user=admin_user, is_playground=True)
    services.messages_add(session=session, messages=[{"role": "user", "content": "Hi"}])
    run = add_run(session, prompt=7, completion=3, cost=0.0005)
    Message.objects.create(session=session, seq=2, role="assistant", content="Hello!", run=run)
    html = admin_client.get(url("version_playground_session", v1.pk, session.uuid)).content.decode()
    assert "Hello!" in html
    assert re.search(r'data-testid="playground-tokens"[^>]*>\s*7 in / 3 out', html)
    assert re.search(r'data-testid="playground-cost"[^>]*>\s*\$0.000500', html)


def test_playground_is_staff_only_and_private(client, admin_client, staff, v1):
    session = services.session_create(chat_model=v1.chat_model, version=v1, user=staff, is_playground=True)
    user = get_user_model().objects.create_user("customer", password="pw")
    client.force_login(user)
    assert client.post(url("version_playground", v1.pk)).status_code == 302  # to the admin login
    assert not Session.objects.filter(user=user).exists()
    other = get_user_model().objects.create_user("other-staff", password="pw", is_staff=True)
    other.user_permissions.set(Permission.objects.filter(codename="view_version"))
    client.force_login(other)
    assert client.get(url("version_playground_session", v1.pk, session.uuid)).status_code == 404
    client.force_login(staff)
    assert client.get(url("version_playground_session", v1.pk, session.uuid)).status_code == 200
    # A normal session is not a playground.
    normal = services.session_create(chat_model=v1.chat_model, version=v1, user=staff)
    assert client.get(url("version_playground_session", v1.pk, normal.uuid)).status_code == 404


# --- bounded queries -------------------------------------------------------------------------------


def test_chat_model_page_with_1000_versions_renders_in_bounded_queries(
    admin_client, chat_model, admin_user, django_assert_max_num_queries
):
    Version.objects.bulk_create(
        Version(chat_model=chat_model, number=n, model="offline/demo", system_prompt=f"p{n}", created_by=admin_user)
        for n in range(2, 1001)
    )
    services.session_create(chat_model=chat_model, version=chat_model.versions.get(number=1000))
    with django_assert_max_num_queries(12):
        response = admin_client.get(url("chatmodel_change", chat_model.pk))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Versions (1000)" in html
    assert "The newest 100 of 1000 versions" in html
    assert html.count("<tr data-version=") == 100
    with django_assert_max_num_queries(15):
        assert admin_client.get(url("version_changelist")).status_code == 200
    with django_assert_max_num_queries(10):
        assert admin_client.get(url("chatmodel_changelist")).status_code == 200


def test_session_page_with_10000_messages_renders_in_bounded_queries(
    admin_client, v1, admin_user, django_assert_max_num_queries
):
    session = services.session_create(chat_model=v1.chat_model, version=v1, user=admin_user)
    run = add_run(session)
    Message.objects.bulk_create(
        (
            Message(
                session=session,
                seq=seq,
                role="user" if seq % 2 else "assistant",
                content=f"message number {seq}",
                run=None if seq % 2 else run,
            )
            for seq in range(1, 10001)
        ),
        batch_size=2000,
    )
    Session.objects.filter(pk=session.pk).update(next_seq=10001)
    with django_assert_max_num_queries(12):
        response = admin_client.get(url("session_change", session.pk))
    html = response.content.decode()
    assert response.status_code == 200
    # The newest page by default, oldest first within it, with links to older pages.
    assert html.count('<li class="role-') == 100
    assert "message number 10000" in html and "message number 9901" in html and "message number 9900<" not in html
    assert "messages 9901–10000 of 10000" in html
    assert "?page=99#conversation" in html and "?page=1#conversation" in html
    with django_assert_max_num_queries(12):
        first = admin_client.get(url("session_change", session.pk) + "?page=1").content.decode()
    assert "message number 1<" in first and "message number 101<" not in first
    with django_assert_max_num_queries(12):
        assert admin_client.get(url("session_changelist")).status_code == 200
