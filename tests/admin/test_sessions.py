"""The session pages: the conversation in order, a page at a time, and the list's filters and search."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from chatmodel_app import services
from chatmodel_app.models import ChatModel, Message, Session

from .helpers import add_run, draft, url

pytestmark = pytest.mark.django_db


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


def test_session_page_says_plainly_whether_it_came_from_the_playground(admin_client, v1, admin_user):
    def field(session) -> str:
        html = admin_client.get(url("session_change", session.pk)).content.decode()
        return re.sub(r"<[^>]+>|\s+", " ", html.split("field-playground")[1].split("</fieldset>")[0])

    normal = services.session_create(chat_model=v1.chat_model, version=v1)
    playground = services.session_create(chat_model=v1.chat_model, version=v1, user=admin_user, is_playground=True)
    assert "Playground: No" in " ".join(field(normal).split())
    assert "Started from the admin playground" not in field(normal)
    assert "Yes: started from the admin playground" in field(playground)


def test_session_list_shows_a_short_uuid_and_the_whole_one_on_hover(admin_client, conversation):
    html = admin_client.get(url("session_changelist")).content.decode()
    uuid = str(conversation.uuid)
    assert f'<span title="{uuid}">{uuid[:8]}</span>' in html
    assert f">{uuid}<" not in html
    assert "simple_assistant v1" in html  # chat model and version in one column
