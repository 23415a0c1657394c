"""The run list and its usage summary."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chatmodel_app import services
from chatmodel_app.models import Run

from .helpers import add_run, url

pytestmark = pytest.mark.django_db


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


def test_run_list_fits_latency_and_a_fallback_model_into_few_columns(admin_client, conversation):
    fallback = add_run(conversation)
    Run.objects.filter(pk=fallback.pk).update(model="gpt-4o-mini")
    html = admin_client.get(url("run_changelist")).content.decode()
    rows = html.split('id="result_list"')[1]
    assert rows.count("120 ms (40 ms)") == 4
    uuid = str(fallback.uuid)
    assert f'<span title="{uuid}">{uuid[:8]}</span>' in rows
    assert "simple_assistant v1 (gpt-4o-mini)" in rows
    assert rows.count("simple_assistant v1<") == 3  # the others ran on the version's own model
    head = rows.split("</thead>")[0]
    assert re.findall(r"column-(\w+)", head) == [
        "short_uuid",
        "version_label",
        "status",
        "tokens",
        "cost_usd",
        "latency",
        "error",
        "created_at",
    ]
