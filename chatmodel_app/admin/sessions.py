"""A session's conversation in order, a page at a time (the newest page first), with its runs' usage."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from .. import selectors
from ..conf import conf
from ..models import Run, Session
from .base import CSS, ReadOnly, admin_url, search_by_uuid, short_uuid
from .filters import FailedRunsFilter, PlaygroundFilter, VersionFilter


class SessionAdmin(ReadOnly, admin.ModelAdmin):
    """A session's conversation in order, a page at a time (the newest page first), with its runs' usage."""

    # Narrow enough for a laptop screen: the uuid shortened (whole on hover), chat model and version in one column.
    list_display = (
        "session",
        "version_label",
        "user",
        "message_count",
        "is_playground",
        "created_at",
        "updated_at",
    )
    list_filter = (
        PlaygroundFilter,
        "chat_model",
        VersionFilter,
        ("user", admin.RelatedOnlyFieldListFilter),
        "created_at",
        FailedRunsFilter,
    )
    list_select_related = ("chat_model", "version", "user")
    search_fields = (f"user__{get_user_model().USERNAME_FIELD}",)
    search_help_text = "A session uuid, or a user name."
    fieldsets = (
        (None, {"fields": ("uuid", "chat_model", "version", "user", "playground", "created_at", "updated_at")}),
        ("Details", {"fields": ("metadata", "summary", "summary_until_seq", "active_run_uuid", "lease_expires_at")}),
    )
    readonly_fields = ("playground",)

    class Media:
        css = {"all": CSS}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("chat_model", "version", "user")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        found = search_by_uuid(queryset, search_term, "uuid")
        if found is not None:
            return found, False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="session", ordering="uuid")
    def session(self, obj: Session) -> str:
        return short_uuid(obj.uuid)

    @admin.display(description="chat model and version", ordering="chat_model__name")
    def version_label(self, obj: Session) -> str:
        return f"{obj.chat_model.name} v{obj.version.number}"

    @admin.display(description="playground")
    def playground(self, obj: Session) -> str:
        # The field's help text ("Started from the admin playground") read as a contradiction beside a ✗.
        return "Yes: started from the admin playground" if obj.is_playground else "No"

    @admin.display(description="messages")
    def message_count(self, obj: Session) -> int:
        # next_seq is handed out gaplessly, so it counts the messages without a query.
        return obj.next_seq - 1

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None) -> HttpResponse:
        session = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if session is not None and self.has_view_permission(request, session):
            extra.update(self._conversation(request, session))
        return super().change_view(request, object_id, form_url, extra)

    def _conversation(self, request: HttpRequest, session: Session) -> dict[str, Any]:
        rows = selectors.session_messages(session=session).select_related("run")
        paginator = Paginator(rows, conf.ADMIN_MESSAGES_PER_PAGE)
        page = paginator.get_page(request.GET.get("page") or paginator.num_pages)
        items: list[dict[str, Any]] = [{"message": m} for m in page.object_list]
        # The current path (branches): mark the messages that have alternatives ("alternative 2/3").
        from ..services.branches import message_alternatives

        alternatives = message_alternatives(session=session, messages=[item["message"] for item in items])
        for item in items:
            item["message"].alternatives = alternatives.get(item["message"].seq)
        if items:
            first, last = items[0]["message"].seq, items[-1]["message"].seq
            # A failed run stored no message: show it after the last message it was given.
            after: dict[int, list[Run]] = {}
            for run in selectors.session_failed_runs(session=session, first_seq=first, last_seq=last):
                after.setdefault(run.last_seq, []).append(run)
            items = [
                entry
                for item in items
                for entry in [item, *({"failed_run": r} for r in after.get(item["message"].seq, []))]
            ]
        return {
            "conversation": items,
            "page": page,
            "paginator": paginator,
            "page_range": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
            "totals": selectors.session_run_totals(session=session),
            "runs_url": admin_url("run_changelist") + f"?q={session.uuid}&playground=all",
        }
