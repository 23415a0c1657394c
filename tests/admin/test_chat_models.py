"""The chat model page (versions, usage, publish history) and Compare versions."""

from __future__ import annotations

import re

import pytest

from chatmodel_app import services
from chatmodel_app.models import Version

from .helpers import WEATHER, draft, url

pytestmark = pytest.mark.django_db


def test_chat_model_page_lists_versions_with_links(admin_client, admin_user, chat_model):
    services.version_create(
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


def test_chat_model_page_shows_usage(admin_client, conversation, v1):
    html = admin_client.get(url("chatmodel_change", v1.chat_model.pk)).content.decode()
    usage = html[html.index('data-testid="usage-summary"') :]
    assert re.findall(r'<td class="num">([^<]*)</td>', usage)[:4] == ["3", "1", "53", "$0.0030"]


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


def test_chat_model_page_with_1000_versions_renders_in_bounded_queries(
    admin_client, chat_model, admin_user, django_assert_max_num_queries
):
    Version.objects.bulk_create(
        Version(chat_model=chat_model, number=n, model="offline/demo", system_prompt=f"p{n}", created_by=admin_user)
        for n in range(2, 1001)
    )
    services.session_create(chat_model=chat_model, version=chat_model.versions.get(number=1000))
    # 12, plus 2 for the feedback section (counts per version, the newest commented replies; issue 18).
    with django_assert_max_num_queries(14):
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
