"""Every model call with status, latency, time to first token, tokens, cost and error; usage per chat model."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from .. import selectors
from ..models import Run
from .base import CSS, ReadOnly, admin_url, search_by_uuid, short_uuid
from .filters import RunPlaygroundFilter, RunVersionFilter


class RunAdmin(ReadOnly, admin.ModelAdmin):
    """Every model call with status, latency, time to first token, tokens, cost and error; usage per chat model."""

    # What people scan for first comes first, in few enough columns for a laptop screen.
    list_display = ("short_uuid", "version_label", "status", "tokens", "cost_usd", "latency", "error", "created_at")
    list_filter = (
        "status",
        RunPlaygroundFilter,
        "version__chat_model",
        RunVersionFilter,
        "stream",
        "created_at",
    )
    list_select_related = ("version__chat_model", "session")
    search_fields = ("error",)
    search_help_text = "A run or session uuid, or an error code."
    fieldsets = (
        (
            None,
            {"fields": ("uuid", "session_link", "version", "status", "model", "stream", "created_at", "finished_at")},
        ),
        (
            "Usage",
            {
                "fields": (
                    "prompt_tokens",
                    "completion_tokens",
                    "estimated_prompt_tokens",
                    "cost",
                    "latency_ms",
                    "time_to_first_token_ms",
                    "finish_reason",
                )
            },
        ),
        ("Error", {"fields": ("error", "error_log_text", "partial_content", "attempts", "cancel_requested")}),
        ("Request", {"fields": ("params", "first_seq", "last_seq", "message_count", "used_summary")}),
    )
    readonly_fields = ("session_link", "error_log_text")

    class Media:
        css = {"all": CSS}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("version__chat_model", "session")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        found = search_by_uuid(queryset, search_term, "uuid", "session__uuid")
        if found is not None:
            return found, False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="run")
    def short_uuid(self, obj: Run) -> str:
        return short_uuid(obj.uuid)

    @admin.display(description="chat model and version", ordering="version__chat_model__name")
    def version_label(self, obj: Run) -> str:
        label = f"{obj.version.chat_model.name} v{obj.version.number}"
        # The model column was dropped for width: a run that fell back to another model still says so.
        return label if obj.model in ("", obj.version.model) else f"{label} ({obj.model})"

    @admin.display(description="latency (first token)", ordering="latency_ms")
    def latency(self, obj: Run) -> str:
        if obj.latency_ms is None:
            return "-"
        first = "" if obj.time_to_first_token_ms is None else f" ({obj.time_to_first_token_ms} ms)"
        return f"{obj.latency_ms} ms{first}"

    @admin.display(description="tokens in / out")
    def tokens(self, obj: Run) -> str:
        if obj.prompt_tokens is None and obj.completion_tokens is None:
            return "-"
        return f"{obj.prompt_tokens or 0} / {obj.completion_tokens or 0}"

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, obj: Run) -> str:
        return "-" if obj.cost is None else f"${obj.cost:.6f}"

    @admin.display(description="session")
    def session_link(self, obj: Run) -> str:
        return format_html('<a href="{}">{}</a>', admin_url("session_change", obj.session_id), obj.session.uuid)

    @admin.display(description="error log")
    def error_log_text(self, obj: Run) -> str:
        return format_html('<pre class="chatmodel-pre">{}</pre>', obj.error_log) if obj.error_log else "-"

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        extra = {"usage": selectors.chat_model_usage(), **(extra_context or {})}
        return super().changelist_view(request, extra)
