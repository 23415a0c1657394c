"""Publishing versions from the admin: A/B ratios, the publish permission, and the record of who did what."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from chatmodel_app import validation
from chatmodel_app.exceptions import ChatModelError
from chatmodel_app.models import PublishRecord, Version

from .helpers import draft, errors_of, publish_action, url

pytestmark = pytest.mark.django_db


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
        validation.ratios_clean({1: float("nan")})
    with pytest.raises(ChatModelError, match="at least one version"):
        validation.ratios_clean({})


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


def test_messages_show_the_chat_model_name_as_typed(admin_client, make_chat_model):
    weather_bot = make_chat_model("weather_bot")
    v2 = draft(weather_bot)
    response = admin_client.post(url("version_publish", v2.pk), {"apply": "1"}, follow=True)
    messages = response.content.decode().split('class="messagelist"')[1].split("</ul>")[0]
    assert "Chat model weather_bot: published v2 (A/B ratio 1); unpublished v1." in messages
    assert "Weather_bot" not in messages
