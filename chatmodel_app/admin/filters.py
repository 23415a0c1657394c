"""List filters: playground sessions hidden by default, versions of the chosen chat model, sessions with failed runs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import selectors
from .base import as_uuid


class PlaygroundFilter(admin.SimpleListFilter):
    """Playground sessions are hidden unless asked for (or searched for by uuid)."""

    title = "playground"
    parameter_name = "playground"
    field = "is_playground"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("only", "Only playground"), ("all", "All")]

    def choices(self, changelist: Any):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Hide playground",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "only":
            return queryset.filter(**{self.field: True})
        if self.value() == "all" or as_uuid(request.GET.get("q", "")):
            return queryset
        return queryset.filter(**{self.field: False})


class RunPlaygroundFilter(PlaygroundFilter):
    field = "session__is_playground"


class VersionFilter(admin.SimpleListFilter):
    """Versions of the chat model chosen in the chat model filter (hidden until one is chosen)."""

    title = "version"
    parameter_name = "version"
    chat_model_parameter = "chat_model__id__exact"
    field = "version_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        chat_model_id = request.GET.get(self.chat_model_parameter)
        if not chat_model_id or not chat_model_id.isdigit():
            return []
        return [(str(pk), f"v{number}") for pk, number in selectors.version_choices(chat_model_id=int(chat_model_id))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{self.field: int(value)})
        return queryset


class RunVersionFilter(VersionFilter):
    chat_model_parameter = "version__chat_model__id__exact"


class FailedRunsFilter(admin.SimpleListFilter):
    title = "failed runs"
    parameter_name = "failed_runs"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "With failed runs"), ("no", "Without failed runs")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return selectors.sessions_filter_failed_runs(queryset, failed=self.value() == "yes")
        return queryset
