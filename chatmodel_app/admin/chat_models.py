"""The chat model page: its versions (newest first), what is published, usage, publish history, and diffs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from .. import selectors
from ..conf import conf
from ..models import ChatModel, Version
from . import diff
from .base import CSS, admin_url, object_or_404
from .labels import LabelsMixin

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _VersionSummary(TypedDict):
        _version_count: int
        published: list[Version]

    # A chat model as get_queryset reads it (selectors.chat_models_annotate_versions).
    AnnotatedChatModel = WithAnnotations[ChatModel, _VersionSummary]


def usage_or_zero(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The one usage row of a chat model, or zeros when it has had no runs in 30 days."""
    if rows:
        return rows[0]
    zero = dict.fromkeys(("runs_7", "failed_7", "tokens_7", "runs_30", "failed_30", "tokens_30"), 0)
    return {**zero, "cost_7": None, "cost_30": None}


def diff_values(version: Version) -> dict[str, Any]:
    """What the diff engine compares of a version."""
    return {name: getattr(version, name) for name in diff.FIELDS}


class ChatModelAdmin(LabelsMixin, admin.ModelAdmin):
    """A chat model: its versions (newest first), what is published, usage, publish history, and diffs."""

    list_display = ("name", "description", "published_versions", "version_count", "updated_at")
    search_fields = ("name", "description")
    fields = ("name", "description")

    class Media:
        css = {"all": CSS}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.chat_models_annotate_versions(super().get_queryset(request))

    @admin.display(description="versions", ordering="_version_count")
    def version_count(self, obj: AnnotatedChatModel) -> int:
        return obj._version_count

    @admin.display(description="published (A/B ratio)")
    def published_versions(self, obj: AnnotatedChatModel) -> str:
        return ", ".join(f"v{v.number} ({v.ratio:g})" for v in obj.published) or "-"

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/diff/",
                self.admin_site.admin_view(self.diff_view),
                name="chatmodel_app_chatmodel_diff",
            ),
            *self.label_urls(),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None) -> HttpResponse:
        # get_object reads through get_queryset, so the chat model carries its annotations.
        chat_model = cast("AnnotatedChatModel | None", self.get_object(request, unquote(object_id)))
        extra = dict(extra_context or {})
        if chat_model is not None:
            extra.update(self._workspace_context(chat_model))
            extra.update(self.labels_context(request, chat_model, published=chat_model.published))
        return super().change_view(request, object_id, form_url, extra)

    def _workspace_context(self, chat_model: AnnotatedChatModel) -> dict[str, Any]:
        versions = selectors.chat_model_versions(chat_model=chat_model, limit=conf.ADMIN_VERSIONS_ON_PAGE)
        return {
            "workspace_versions": versions,
            "version_total": chat_model._version_count,
            "versions_truncated": chat_model._version_count > len(versions),
            "versions_url": admin_url("version_changelist") + f"?chat_model__id__exact={chat_model.pk}",
            "published": chat_model.published,
            "usage_rows": [usage_or_zero(selectors.chat_model_usage(chat_model=chat_model))],
            # Feedback on replies per version, next to the usage (two queries).
            "feedback_rows": selectors.feedback_by_version(chat_model=chat_model),
            "feedback_comments": selectors.feedback_commented(chat_model=chat_model),
            "publish_history": selectors.publish_history(chat_model=chat_model),
            "add_version_url": admin_url("version_add") + f"?chat_model={chat_model.pk}",
            "diff_url": admin_url("chatmodel_diff", chat_model.pk),
            "sessions_url": admin_url("session_changelist") + f"?chat_model__id__exact={chat_model.pk}",
            "runs_url": admin_url("run_changelist") + f"?version__chat_model__id__exact={chat_model.pk}",
        }

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Two versions of this chat model side by side: ``?a=<number>&b=<number>`` (default: the newest two)."""
        chat_model = object_or_404(self, request, object_id)
        numbers = [number for _, number in selectors.version_choices(chat_model_id=chat_model.pk, limit=2)]
        try:
            b = int(request.GET.get("b") or (numbers[0] if numbers else 0))
            a = int(request.GET.get("a") or (numbers[1] if len(numbers) > 1 else b))
        except ValueError:
            raise Http404("Version numbers must be whole numbers.") from None
        found = selectors.versions_by_number(chat_model=chat_model, numbers=[a, b])
        missing = [n for n in (a, b) if n not in found]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "chat_model": chat_model,
            "title": f"Compare versions of {chat_model}",
            "a": a,
            "b": b,
            "missing": missing,
            "fold": request.GET.get("full") != "1",
            "change_url": admin_url("chatmodel_change", chat_model.pk),
        }
        if not missing:
            context.update(
                left=found[a],
                right=found[b],
                sections=diff.diff_sections(diff_values(found[a]), diff_values(found[b]), fold=context["fold"]),
                swap_url=f"?a={b}&b={a}",
            )
        return TemplateResponse(
            request, "admin/chatmodel_app/chatmodel/diff.html", context, status=404 if missing else 200
        )
