"""The admin side of labels and prompt variables: labels on the chat model page, moves and one-click rollbacks,
the version editor's declarations, the diff, and the playground asking for values."""

from __future__ import annotations

import re

import pytest

from chatmodel_app import services
from chatmodel_app.models import PublishRecord, Session, Version
from chatmodel_app.services.labels import label_move, label_sets

from .helpers import draft, editor_data, errors_of, url

pytestmark = pytest.mark.django_db


def labels_table(html: str) -> str:
    start = html.index('data-testid="labels"')
    return html[start : html.index("</table>", start)]


# --- labels ------------------------------------------------------------------------------------------------


def test_chat_model_page_shows_each_label_with_its_versions(admin_client, v1):
    draft(v1.chat_model)
    label_move(chat_model=v1.chat_model, label="staging", ratios={1: 1, 2: 3})
    table = labels_table(admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode())
    assert re.search(r'data-label="production".*?v1</a> <span[^>]*>1 · 100%', table, re.S)
    assert re.search(r'data-label="staging".*?v1</a> <span[^>]*>1 · 25%.*?v2</a> <span[^>]*>3 · 75%', table, re.S)
    assert 'data-testid="label-move"' in table and 'data-testid="label-delete"' in table


def test_moving_a_label_from_the_admin(admin_client, admin_user, v1):
    v2 = draft(v1.chat_model)
    move_url = url("chatmodel_label_move", v1.chat_model.pk)
    page = admin_client.get(move_url, {"label": "production"}).content.decode()
    assert 'name="ratio_1"' in page and 'name="ratio_2"' in page and 'value="production"' in page
    response = admin_client.post(move_url, {"label": "staging", "ratio_2": "1", "ratio_1": ""})
    assert response.status_code == 302 and response["Location"].endswith("#labels")
    assert label_sets(chat_model=v1.chat_model)["staging"] == {2: 1.0}
    record = PublishRecord.objects.get(label="staging")
    assert (record.version, record.action, record.user) == (v2, "publish", admin_user)
    # Moving production publishes.
    admin_client.post(move_url, {"label": "production", "ratio_1": "1", "ratio_2": "1"})
    assert set(Version.objects.filter(is_published=True).values_list("number", flat=True)) == {1, 2}
    page = admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    history = page[page.index('data-testid="publish-history"') :]
    assert "<code>staging</code>" in history and "<code>production</code>" in history


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"label": "latest", "ratio_1": "1"}, "cannot be a label name"),
        ({"label": "Has Spaces", "ratio_1": "1"}, "lowercase letters"),
        ({"label": "staging"}, "Give at least one version an A/B ratio above 0."),
        ({"label": "staging", "ratio_1": "-1"}, "greater than or equal to 0"),
    ],
)
def test_a_bad_move_shows_its_error_and_changes_nothing(admin_client, v1, data, error):
    response = admin_client.post(url("chatmodel_label_move", v1.chat_model.pk), data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert label_sets(chat_model=v1.chat_model) == {"production": {1: 1.0}}


def test_one_click_rollback_with_confirmation(admin_client, admin_user, v1):
    v2 = draft(v1.chat_model)
    services.versions_publish(chat_model=v1.chat_model, ratios={2: 1}, user=admin_user)
    page = admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    rollback_url = url("chatmodel_label_rollback", v1.chat_model.pk, "production")
    assert f'href="{rollback_url}"' in labels_table(page)
    # The link asks first, saying what will change; nothing changes on GET.
    confirm = admin_client.get(rollback_url).content.decode()
    assert re.search(r'data-testid="label-current">v2 \(1\)<', confirm)
    assert re.search(r'data-testid="label-target">v1 \(1\)<', confirm)
    assert 'data-testid="confirm-label-rollback"' in confirm
    v2.refresh_from_db()
    assert v2.is_published
    response = admin_client.post(rollback_url)
    assert response.status_code == 302
    assert list(Version.objects.filter(is_published=True).values_list("number", flat=True)) == [1]
    assert set(PublishRecord.objects.filter(rollback=True).values_list("version__number", "action", "user")) == {
        (1, "publish", admin_user.pk),
        (2, "unpublish", admin_user.pk),
    }
    messages = admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    assert "rolled label production back from v2 (1) to v1 (1)" in messages
    assert "rollback</span>" in messages


def test_rollback_without_a_previous_set_is_refused_with_a_message(admin_client, v1):
    # v1 was published first: before that nothing was, so there is nothing to roll back to.
    page = admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    assert 'data-testid="label-rollback"' not in labels_table(page)
    response = admin_client.post(url("chatmodel_label_rollback", v1.chat_model.pk, "production"), follow=True)
    assert "Not rolled back" in response.content.decode()
    assert list(Version.objects.filter(is_published=True).values_list("number", flat=True)) == [1]


def test_deleting_a_label_and_rolling_the_deletion_back(admin_client, v1):
    draft(v1.chat_model)
    label_move(chat_model=v1.chat_model, label="staging", ratios={2: 1})
    delete_url = url("chatmodel_label_delete", v1.chat_model.pk, "staging")
    assert "v2 (1)" in admin_client.get(delete_url).content.decode()
    assert admin_client.post(delete_url).status_code == 302
    assert "staging" not in label_sets(chat_model=v1.chat_model)
    admin_client.post(url("chatmodel_label_rollback", v1.chat_model.pk, "staging"))
    assert label_sets(chat_model=v1.chat_model)["staging"] == {2: 1.0}


def test_labels_need_the_publish_permission(client, staff, v1):
    client.force_login(staff)  # may view and edit versions, not publish them
    page = client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    assert 'data-testid="labels"' in page and 'data-testid="label-move"' not in page
    assert client.get(url("chatmodel_label_move", v1.chat_model.pk)).status_code == 403
    data = {"label": "staging", "ratio_1": "1"}
    assert client.post(url("chatmodel_label_move", v1.chat_model.pk), data).status_code == 403
    assert client.post(url("chatmodel_label_rollback", v1.chat_model.pk, "production")).status_code == 403
    assert label_sets(chat_model=v1.chat_model) == {"production": {1: 1.0}}


def test_a_version_a_label_serves_cannot_be_deleted(admin_client, v1):
    v2 = draft(v1.chat_model)
    label_move(chat_model=v1.chat_model, label="staging", ratios={2: 1})
    assert admin_client.post(url("version_delete", v2.pk), {"post": "yes"}).status_code == 403
    assert Version.objects.filter(pk=v2.pk).exists()
    label_move(chat_model=v1.chat_model, label="staging", ratios={1: 1})
    admin_client.post(url("version_delete", v2.pk), {"post": "yes"})
    assert not Version.objects.filter(pk=v2.pk).exists()


# --- variables in the version editor and the diff -----------------------------------------------------------


def test_the_editor_saves_declarations_and_refuses_undeclared_placeholders(admin_client, v1):
    data = editor_data(
        chat_model=str(v1.chat_model.pk),
        system_prompt="Hello {{ customer_name }}, {{ tone }} please.",
        variables='[{"name": "customer_name", "required": true}]',
    )
    response = admin_client.post(url("version_add"), data)
    assert response.status_code == 200
    assert "uses {{ tone }}, which is not declared" in errors_of(response)
    data["variables"] = '[{"name": "customer_name", "required": true}, {"name": "tone", "default": "warm"}]'
    response = admin_client.post(url("version_add"), data)
    assert response.status_code == 302, errors_of(response)
    version = Version.objects.get(chat_model=v1.chat_model, number=2)
    assert version.variables == [
        {"name": "customer_name", "default": "", "required": True, "description": ""},
        {"name": "tone", "default": "warm", "required": False, "description": ""},
    ]
    bad = admin_client.post(url("version_change", version.pk), {**data, "variables": '[{"name": "x.__class__"}]'})
    assert "must be an identifier" in errors_of(bad)


def test_a_used_version_shows_its_declarations_read_only(admin_client, v1):
    v2 = draft(v1.chat_model, "Hi {{ who }}", variables=["who"])
    services.session_create(chat_model=v1.chat_model, version=v2)
    html = admin_client.get(url("version_change", v2.pk)).content.decode()
    assert "&quot;name&quot;: &quot;who&quot;" in html and 'name="variables"' not in html


def test_the_diff_shows_declarations_when_a_version_has_some(admin_client, v1):
    draft(v1.chat_model, "Hi {{ who }}", variables=[{"name": "who", "default": "there"}])
    html = admin_client.get(url("chatmodel_diff", v1.chat_model.pk), {"a": 1, "b": 2}).content.decode()
    assert 'data-testid="diff-variables"' in html
    section = html[html.index('data-testid="diff-variables"') :]
    assert "&quot;default&quot;: &quot;there&quot;" in section[: section.index("</section>")]
    # Two versions without variables: no such section.
    draft(v1.chat_model)
    html = admin_client.get(url("chatmodel_diff", v1.chat_model.pk), {"a": 1, "b": 3}).content.decode()
    assert 'data-testid="diff-variables"' not in html


# --- the playground asks for values --------------------------------------------------------------------------


def test_the_playground_asks_for_values_and_shows_the_prompt_as_sent(admin_client, admin_user, v1):
    v2 = draft(
        v1.chat_model,
        "Help {{ customer_name }} in a {{ tone }} tone.",
        variables=[
            {"name": "customer_name", "required": True, "description": "Who"},
            {"name": "tone", "default": "warm"},
        ],
    )
    start = admin_client.get(url("version_playground", v2.pk)).content.decode()
    assert re.search(r'<textarea id="id_var_customer_name" name="var_customer_name"[^>]*required', start)
    assert re.search(r'name="var_tone"[^>]*>warm</textarea>', start)
    # A missing required value: the form again, saying so; no session.
    refused = admin_client.post(url("version_playground", v2.pk), {"var_customer_name": "", "var_tone": "dry"})
    assert refused.status_code == 400
    assert "Missing required variable: customer_name" in refused.content.decode()
    assert re.search(r'name="var_tone"[^>]*>dry</textarea>', refused.content.decode())  # what was typed stays
    assert not Session.objects.exists()
    response = admin_client.post(url("version_playground", v2.pk), {"var_customer_name": "Ada", "var_tone": "dry"})
    assert response.status_code == 302
    session = Session.objects.get()
    assert (session.variables, session.is_playground) == ({"customer_name": "Ada", "tone": "dry"}, True)
    page = admin_client.get(response["Location"]).content.decode()
    assert re.search(r'data-testid="playground-rendered-prompt">Help Ada in a dry tone.<', page)
    # "New conversation" starts from this session's values.
    assert re.search(r'name="var_customer_name"[^>]*>Ada</textarea>', page)


def test_the_playground_of_a_version_without_variables_is_as_before(admin_client, v1):
    start = admin_client.get(url("version_playground", v1.pk)).content.decode()
    assert 'data-testid="playground-variables"' not in start
    assert admin_client.post(url("version_playground", v1.pk)).status_code == 302


def test_the_labels_section_costs_the_same_queries_however_many_labels(admin_client, v1):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for n in range(2, 6):
        draft(v1.chat_model, f"Prompt {n}.")
    label_move(chat_model=v1.chat_model, label="staging", ratios={2: 1})
    page_url = url("chatmodel_change", v1.chat_model.pk)
    admin_client.get(page_url)  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as one_label:
        admin_client.get(page_url)
    for n in range(30):
        label_move(chat_model=v1.chat_model, label=f"team-{n}", ratios={2 + n % 4: 1, 5: 2})
        label_move(chat_model=v1.chat_model, label=f"team-{n}", ratios={3: 1})
    with CaptureQueriesContext(connection) as many_labels:
        html = admin_client.get(page_url).content.decode()
    assert html.count("data-label=") == 32
    assert len(many_labels) == len(one_label)


def test_version_and_session_pages_show_labels_and_values(admin_client, v1):
    v2 = draft(v1.chat_model, "Hi {{ who }}", variables=["who"])
    label_move(chat_model=v1.chat_model, label="staging", ratios={1: 1, 2: 1})
    html = admin_client.get(url("version_change", v1.pk)).content.decode()
    assert re.search(r"served_by_labels.*?production, staging", html, re.S)
    session = services.session_create(chat_model=v1.chat_model, version=v2, variables={"who": "Ada <b>"})
    html = admin_client.get(url("session_change", session.pk)).content.decode()
    section = html[html.index('data-testid="session-variables"') :]
    assert "<code>who</code>" in section and "Ada &lt;b&gt;" in section
