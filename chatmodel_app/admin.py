"""The admin as a prompt-engineering workspace: versions, publishing, diffs, a playground, sessions and runs.

Every write goes through ``services`` (the admin only translates requests and errors);
pages that could grow without bound (a chat model's versions, a session's messages)
show a bounded slice with links to the rest, so each renders in a fixed number of queries.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.views.decorators.cache import cache_control

from . import llm, selectors, services
from .conf import conf
from .exceptions import ChatModelError
from .forms import PublishForm, VersionForm
from .llm.offline import MODEL as OFFLINE_MODEL
from .models import ChatModel, Message, PublishRecord, Run, Session, Version

_FAILED = (Run.Status.FAILED, Run.Status.INCOMPLETE)
_CSS = ("chatmodel_app/admin/admin.css",)


def _url(name: str, *args: Any) -> str:
    return reverse(f"admin:chatmodel_app_{name}", args=args)


def _messages_url(session: Session) -> str | None:
    """The REST messages endpoint the client resyncs from after a reconnect, when the host mounts the API."""
    try:
        return reverse("chatmodel_api:messages", kwargs={"uuid": str(session.uuid)})
    except NoReverseMatch:
        return None


def _as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


# --- list filters ---------------------------------------------------------------------------------


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
        if self.value() == "all" or _as_uuid(request.GET.get("q", "")):
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
        versions = Version.objects.filter(chat_model_id=chat_model_id).order_by("-number")
        return [(str(pk), f"v{number}") for pk, number in versions.values_list("pk", "number")[:100]]

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
        failed = Exists(Run.objects.filter(session=OuterRef("pk"), status__in=_FAILED))
        if self.value() == "yes":
            return queryset.filter(failed)
        if self.value() == "no":
            return queryset.filter(~failed)
        return queryset


# --- diffs ------------------------------------------------------------------------------------------

_WORDS = re.compile(r"\s+|\w+|[^\w\s]")
# Unchanged runs longer than this are folded, keeping this much context on each side.
_CONTEXT = 3


def _intraline(old: str, new: str) -> tuple[SafeString, SafeString]:
    """Both lines as HTML, the words that differ marked with <del>/<ins>."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    left, right = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            left.append(escape("".join(a[i1:i2])))
            right.append(escape("".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append(format_html("<del>{}</del>", "".join(a[i1:i2])))
        if j2 > j1:
            right.append(format_html("<ins>{}</ins>", "".join(b[j1:j2])))
    return mark_safe("".join(left)), mark_safe("".join(right))  # noqa: S308 - every part was escaped above


def side_by_side(old: str, new: str, *, fold: bool = True) -> list[dict[str, Any]]:
    """Rows of a side-by-side line diff: kind (equal/replace/delete/insert/fold), line numbers and HTML."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[dict[str, Any]] = []
    opcodes = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            n = i2 - i1
            # Context lines after the previous change and before the next one; the middle folds.
            head = _CONTEXT if index > 0 else 0
            tail = _CONTEXT if index < len(opcodes) - 1 else 0
            folded = fold and n > head + tail + 1
            shown = [*range(head), *range(n - tail, n)] if folded else list(range(n))
            for position, k in enumerate(shown):
                if folded and position == head:
                    rows.append({"kind": "fold", "count": n - head - tail})
                rows.append(
                    {"kind": "equal", "ln": i1 + k + 1, "left": a[i1 + k], "rn": j1 + k + 1, "right": b[j1 + k]}
                )
            if folded and not tail:
                rows.append({"kind": "fold", "count": n - head - tail})
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            left = a[i1 + k] if i1 + k < i2 else None
            right = b[j1 + k] if j1 + k < j2 else None
            row: dict[str, Any] = {
                "ln": i1 + k + 1 if left is not None else None,
                "rn": j1 + k + 1 if right is not None else None,
            }
            if left is not None and right is not None:
                row["kind"] = "replace"
                row["left"], row["right"] = _intraline(left, right)
            elif left is None:
                row.update(kind="insert", left=None, right=right)
            else:
                row.update(kind="delete", left=left, right=None)
            rows.append(row)
    return rows


def _shown(value: Any) -> str:
    if value in (None, "", []):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _diff_sections(a: Version, b: Version, *, fold: bool) -> list[dict[str, Any]]:
    settings_fields = [
        ("model", "Model"),
        ("truncation", "Truncation"),
        ("truncation_last_messages", "Keep last N messages"),
        ("context_window", "Context window"),
        ("summary_model", "Summary model"),
        ("fallbacks", "Fallbacks"),
        ("tags", "Tags"),
        ("memo", "Memo"),
        ("is_published", "Published"),
        ("ratio", "A/B ratio"),
    ]
    settings_rows = [
        {
            "label": label,
            "left": _shown(getattr(a, name)),
            "right": _shown(getattr(b, name)),
            "changed": getattr(a, name) != getattr(b, name),
        }
        for name, label in settings_fields
    ]
    texts = [
        ("system_prompt", "System prompt", a.system_prompt, b.system_prompt),
        ("params", "Params", _pretty(a.params), _pretty(b.params)),
        ("tools", "Functions / tools", _pretty(a.tools), _pretty(b.tools)),
    ]
    sections = [
        {"id": key, "title": title, "same": left == right, "rows": side_by_side(left, right, fold=fold)}
        for key, title, left, right in texts
    ]
    return [sections[0], {"id": "settings", "title": "Model and settings", "table": settings_rows}, *sections[1:]]


# --- chat models ------------------------------------------------------------------------------------


def _usage_or_zero(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if rows:
        return rows[0]
    zero = dict.fromkeys(("runs_7", "failed_7", "tokens_7", "runs_30", "failed_30", "tokens_30"), 0)
    return {**zero, "cost_7": None, "cost_30": None}


@admin.register(ChatModel)
class ChatModelAdmin(admin.ModelAdmin):
    """A chat model: its versions (newest first), what is published, usage, publish history, and diffs."""

    list_display = ("name", "description", "published_versions", "version_count", "updated_at")
    search_fields = ("name", "description")
    fields = ("name", "description")

    class Media:
        css = {"all": _CSS}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        published = Version.objects.filter(is_published=True).order_by("number")
        return (
            super()
            .get_queryset(request)
            .annotate(_version_count=Count("versions"))
            .prefetch_related(Prefetch("versions", queryset=published, to_attr="published"))
        )

    @admin.display(description="versions", ordering="_version_count")
    def version_count(self, obj: ChatModel) -> int:
        return obj._version_count

    @admin.display(description="published (A/B ratio)")
    def published_versions(self, obj: ChatModel) -> str:
        return ", ".join(f"v{v.number} ({v.ratio:g})" for v in obj.published) or "-"

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/diff/",
                self.admin_site.admin_view(self.diff_view),
                name="chatmodel_app_chatmodel_diff",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None) -> HttpResponse:
        chat_model = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if chat_model is not None:
            extra.update(self._workspace_context(chat_model))
        return super().change_view(request, object_id, form_url, extra)

    def _workspace_context(self, chat_model: ChatModel) -> dict[str, Any]:
        limit = conf.ADMIN_VERSIONS_ON_PAGE
        in_use = Exists(Session.objects.filter(version=OuterRef("pk")))
        versions = list(
            Version.objects.filter(chat_model=chat_model)
            .select_related("created_by")
            .annotate(in_use=in_use)
            .order_by("-number")[:limit]
        )
        history = PublishRecord.objects.filter(version__chat_model=chat_model).select_related("version", "user")[:20]
        versions_url = _url("version_changelist") + f"?chat_model__id__exact={chat_model.pk}"
        return {
            "workspace_versions": versions,
            "version_total": chat_model._version_count,
            "versions_truncated": chat_model._version_count > len(versions),
            "versions_url": versions_url,
            "published": chat_model.published,
            "usage_rows": [_usage_or_zero(selectors.chat_model_usage(chat_model=chat_model))],
            "publish_history": list(history),
            "add_version_url": _url("version_add") + f"?chat_model={chat_model.pk}",
            "diff_url": _url("chatmodel_diff", chat_model.pk),
            "sessions_url": _url("session_changelist") + f"?chat_model__id__exact={chat_model.pk}",
            "runs_url": _url("run_changelist") + f"?version__chat_model__id__exact={chat_model.pk}",
        }

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Two versions of this chat model side by side: ``?a=<number>&b=<number>`` (default: the newest two)."""
        chat_model = self.get_object(request, unquote(object_id))
        if chat_model is None:
            raise Http404("No such chat model.")
        if not self.has_view_permission(request, chat_model):
            raise PermissionDenied
        numbers = list(
            Version.objects.filter(chat_model=chat_model).order_by("-number").values_list("number", flat=True)[:2]
        )
        try:
            b = int(request.GET.get("b") or (numbers[0] if numbers else 0))
            a = int(request.GET.get("a") or (numbers[1] if len(numbers) > 1 else b))
        except ValueError:
            raise Http404("Version numbers must be whole numbers.") from None
        found = {v.number: v for v in Version.objects.filter(chat_model=chat_model, number__in=[a, b])}
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
            "change_url": _url("chatmodel_change", chat_model.pk),
        }
        if not missing:
            context.update(
                left=found[a],
                right=found[b],
                sections=_diff_sections(found[a], found[b], fold=context["fold"]),
                swap_url=f"?a={b}&b={a}",
            )
        return TemplateResponse(
            request, "admin/chatmodel_app/chatmodel/diff.html", context, status=404 if missing else 200
        )


# --- versions ---------------------------------------------------------------------------------------


class _ServiceError(Exception):
    """A service refused a save the form had accepted (e.g. the version was used meanwhile)."""


def _missing_keys(version: Version) -> list[str]:
    """Unset key variables of the provider profiles a version (or its fallbacks) uses."""
    from .llm.providers import missing_key

    return sorted({v for v in (missing_key(m) for m in [version.model, *(version.fallbacks or [])]) if v})


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    """The version editor, read-only once a version has served a session; publishing, copies and the playground."""

    form = VersionForm
    list_display = (
        "__str__",
        "number",
        "model",
        "is_published",
        "ratio",
        "used",
        "provider_key",
        "created_by",
        "short_memo",
        "created_at",
    )
    list_filter = ("is_published", "chat_model", ("created_by", admin.RelatedOnlyFieldListFilter), "created_at")
    list_select_related = ("chat_model", "created_by")
    search_fields = ("chat_model__name", "memo", "model")
    ordering = ("chat_model__name", "-number")
    actions = ["publish_selected", "unpublish_selected", "copy_selected", "compare_selected"]
    publication_fields = ("number", "uuid", "is_published", "ratio", "created_by", "created_at")

    class Media:
        css = {"all": _CSS}
        js = ("chatmodel_app/admin/editor.js",)

    # -- list

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("chat_model", "created_by")
            .annotate(_in_use=Exists(Session.objects.filter(version=OuterRef("pk"))))
        )

    @admin.display(boolean=True, description="served sessions")
    def used(self, obj: Version) -> bool:
        return self._in_use(obj)

    @admin.display(description="provider key")
    def provider_key(self, obj: Version) -> str:
        missing = _missing_keys(obj)
        if not missing:
            return "ok"
        return format_html('<span class="chatmodel-warning">{} not set</span>', ", ".join(missing))

    @admin.display(description="memo")
    def short_memo(self, obj: Version) -> str:
        return Truncator(obj.memo).chars(60)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        # Versions are history: drafts are deleted one at a time from their page, never in bulk.
        actions.pop("delete_selected", None)
        return actions

    # -- permissions

    def _in_use(self, obj: Version) -> bool:
        if not hasattr(obj, "_in_use"):
            obj._in_use = services.version_in_use(version=obj)
        return obj._in_use

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.publish_version")

    def has_change_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        # A version that has served a session is shown read-only (Django's view-only page).
        return super().has_change_permission(request, obj) and not (obj is not None and self._in_use(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        if obj is not None and (obj.is_published or self._in_use(obj)):
            return False
        return super().has_delete_permission(request, obj)

    # -- the editor

    def get_fieldsets(self, request: HttpRequest, obj: Version | None = None) -> list:
        # A read-only version shows its JSON indented, as the editor does.
        json_fields = ("params_json", "tools_json") if obj is not None and self._in_use(obj) else ("params", "tools")
        fieldsets = [
            (None, {"fields": ("chat_model", "model", "system_prompt")}),
            ("Parameters and functions", {"fields": json_fields}),
            (
                "Context window",
                {
                    "fields": (
                        "truncation",
                        "truncation_last_messages",
                        "context_window",
                        "summary_model",
                        "fallbacks",
                    ),
                    "classes": ("collapse",),
                },
            ),
            ("Notes", {"fields": ("memo", "tags")}),
        ]
        if obj is not None:
            fieldsets.append(("Publication", {"fields": self.publication_fields}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Version | None = None) -> tuple:
        return () if obj is None else ("chat_model", "params_json", "tools_json", *self.publication_fields)

    @admin.display(description="params")
    def params_json(self, obj: Version) -> str:
        return format_html('<pre class="chatmodel-pre">{}</pre>', _pretty(obj.params)) if obj.params else "-"

    @admin.display(description="functions / tools")
    def tools_json(self, obj: Version) -> str:
        return format_html('<pre class="chatmodel-pre">{}</pre>', _pretty(obj.tools)) if obj.tools else "-"

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        chat_model_id = initial.get("chat_model")
        latest = None
        if chat_model_id and str(chat_model_id).isdigit():
            latest = Version.objects.filter(chat_model_id=chat_model_id).order_by("-number").first()
        # A new version starts from the newest one of its chat model, or from the offline model.
        if latest is not None:
            initial.update({name: getattr(latest, name) for name in services.VERSION_FIELDS if name != "memo"})
        initial.setdefault("model", OFFLINE_MODEL)
        return initial

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None) -> HttpResponse:
        version = self.get_object(request, object_id) if object_id and request.method == "GET" else None
        missing = _missing_keys(version) if version is not None else []
        if missing:
            # The same warning as system check W002, beside the version it is about.
            self.message_user(
                request,
                f"The environment variable {', '.join(missing)} that holds this model's API key is not set on the "
                "server: runs of this version will fail with 'authentication'.",
                messages.WARNING,
            )
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: Version, form: VersionForm, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in services.VERSION_FIELDS if name in form.cleaned_data}
        try:
            if change:
                saved = services.version_update(version=obj, **fields)
            else:
                saved = services.version_draft_create(
                    chat_model=form.cleaned_data["chat_model"], created_by=request.user, **fields
                )
        except ChatModelError as exc:
            raise _ServiceError(str(exc)) from exc
        for field in Version._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    def response_add(self, request: HttpRequest, obj: Version, post_url_continue=None) -> HttpResponse:
        if "_addanother" not in request.POST and "_popup" not in request.POST:
            # A new draft is for editing and trying: stay on it.
            request.POST = request.POST.copy()
            request.POST["_continue"] = "1"
        return super().response_add(request, obj, post_url_continue)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None) -> HttpResponse:
        if request.method == "POST" and "_save_as_new_version" in request.POST:
            response = self._save_as_new(request, object_id)
            if response is not None:
                return response
        version = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if version is not None:
            extra.update(self._version_context(request, version))
        return super().change_view(request, object_id, form_url, extra)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        extra = {
            "known_models_url": _url("version_known_models"),
            "show_save_and_add_another": False,
            **(extra_context or {}),
        }
        return super().add_view(request, form_url, extra)

    def _version_context(self, request: HttpRequest, version: Version) -> dict[str, Any]:
        previous = (
            Version.objects.filter(chat_model_id=version.chat_model_id, number__lt=version.number)
            .order_by("-number")
            .values_list("number", flat=True)
            .first()
        )
        published = (
            Version.objects.filter(chat_model_id=version.chat_model_id, is_published=True)
            .exclude(pk=version.pk)
            .order_by("number")
            .values_list("number", flat=True)
            .first()
        )
        diff = _url("chatmodel_diff", version.chat_model_id)
        return {
            "show_save_and_add_another": False,
            "version_in_use": self._in_use(version),
            "known_models_url": _url("version_known_models"),
            "can_publish": self.has_publish_permission(request),
            "can_add": self.has_add_permission(request),
            "publish_url": _url("version_publish", version.pk),
            "copy_url": _url("version_copy", version.pk),
            "playground_url": _url("version_playground", version.pk),
            "diff_previous_url": f"{diff}?a={previous}&b={version.number}" if previous else None,
            "diff_published_url": f"{diff}?a={published}&b={version.number}" if published else None,
            "diff_url": f"{diff}?b={version.number}",
            "sessions_url": _url("session_changelist")
            + f"?chat_model__id__exact={version.chat_model_id}&version={version.pk}&playground=all",
            "runs_url": _url("run_changelist")
            + f"?version__chat_model__id__exact={version.chat_model_id}&version={version.pk}&playground=all",
        }

    def _save_as_new(self, request: HttpRequest, object_id: str) -> HttpResponse | None:
        """Copy the version, with the edits on the page applied, into a new draft; None when the edits are invalid."""
        version = self.get_object(request, unquote(object_id))
        if version is None:
            raise Http404("No such version.")
        if not self.has_add_permission(request):
            raise PermissionDenied
        overrides: dict[str, Any] = {}
        if not self._in_use(version):
            original = {name: getattr(version, name) for name in services.VERSION_FIELDS}
            Form = self.get_form(request, version, change=True)
            form = Form(request.POST, request.FILES, instance=version)
            if not form.is_valid():
                return None  # the normal change view shows the errors (it saves nothing on invalid input)
            overrides = {n: form.cleaned_data[n] for n in services.VERSION_FIELDS if n in form.cleaned_data}
            if "memo" not in form.changed_data:
                overrides.pop("memo", None)
            for name, value in original.items():
                setattr(version, name, value)  # the form wrote the edits onto the instance; the copy starts clean
        return self._copy(request, version, overrides)

    def _copy(self, request: HttpRequest, version: Version, overrides: dict[str, Any]) -> HttpResponse:
        try:
            new = services.version_copy(version=version, created_by=request.user, **overrides)
        except ChatModelError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(_url("version_change", version.pk))
        self.log_addition(request, new, f"Copied from v{version.number}.")
        self.message_user(
            request, f"Saved as new draft {new} (from v{version.number}, which is unchanged).", messages.SUCCESS
        )
        return HttpResponseRedirect(_url("version_change", new.pk))

    # -- extra pages

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("known-models/", view(self.known_models_view), name="chatmodel_app_version_known_models"),
            path("<path:object_id>/copy/", view(self.copy_view), name="chatmodel_app_version_copy"),
            path("<path:object_id>/publish/", view(self.publish_view), name="chatmodel_app_version_publish"),
            path(
                "<path:object_id>/playground/",
                view(self.playground_start_view),
                name="chatmodel_app_version_playground",
            ),
            path(
                "<path:object_id>/playground/<uuid:session_uuid>/",
                view(self.playground_view),
                name="chatmodel_app_version_playground_session",
            ),
            *super().get_urls(),
        ]

    @staticmethod
    @cache_control(private=True, max_age=3600)
    def known_models_view(request: HttpRequest) -> JsonResponse:
        """Model strings for the editor's suggestions (importing litellm once, on first use)."""
        if not request.user.is_staff:
            raise PermissionDenied
        return JsonResponse({"models": llm.known_models()})

    def _get_version(self, request: HttpRequest, object_id: str) -> Version:
        version = self.get_object(request, unquote(object_id))
        if version is None:
            raise Http404("No such version.")
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        return version

    def copy_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: copy this version, as it is stored, into a new draft."""
        version = self._get_version(request, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(_url("version_change", version.pk))
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self._copy(request, version, {})

    # -- publishing

    def _publish_page(self, request: HttpRequest, chosen: list[Version], *, action: bool) -> HttpResponse | None:
        """The publish form (GET or first action POST), or apply it; None after applying from an action."""
        if not self.has_publish_permission(request):
            raise PermissionDenied
        published = list(
            Version.objects.filter(chat_model__in={v.chat_model_id for v in chosen}, is_published=True)
            .select_related("chat_model")
            .order_by("chat_model__name", "number")
        )
        applying = request.method == "POST" and "apply" in request.POST
        form = PublishForm(request.POST if applying else None, chosen=chosen, published=published)
        if applying and form.is_valid():
            for chat_model, ratios in form.ratios():
                try:
                    records = services.versions_publish(chat_model=chat_model, ratios=ratios, user=request.user)
                except ChatModelError as exc:
                    self.message_user(request, f"{chat_model}: {exc}", messages.ERROR)
                    continue
                self._log_publish(request, chat_model, records)
            if action:
                return None
            return HttpResponseRedirect(_url("version_change", chosen[0].pk))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Publish versions",
            "form": form,
            "groups": form.groups(),
            "chosen": chosen,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/chatmodel_app/version/publish.html", context)

    def _log_publish(self, request: HttpRequest, chat_model: ChatModel, records: list[PublishRecord]) -> None:
        if not records:
            self.message_user(request, f"{chat_model}: nothing changed; those versions were already published.")
            return
        published = [r for r in records if r.action == PublishRecord.Action.PUBLISH]
        unpublished = [r for r in records if r.action == PublishRecord.Action.UNPUBLISH]
        parts = []
        if published:
            parts.append("published " + ", ".join(f"v{r.version.number} (A/B ratio {r.ratio:g})" for r in published))
        if unpublished:
            parts.append("unpublished " + ", ".join(f"v{r.version.number}" for r in unpublished))
        summary = "; ".join(parts)
        for record in records:
            if record.action == PublishRecord.Action.PUBLISH:
                replaced = ", ".join(f"v{r.version.number}" for r in unpublished)
                note = f"Published (A/B ratio {record.ratio:g})" + (f", replacing {replaced}." if replaced else ".")
            else:
                note = "Unpublished" + (
                    f" in favour of {', '.join(f'v{r.version.number}' for r in published)}." if published else "."
                )
            self.log_change(request, record.version, note)
        self.log_change(request, chat_model, summary[0].upper() + summary[1:] + ".")
        self.message_user(request, f"{chat_model}: {summary}.", messages.SUCCESS)

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Publish this version alone, or alongside published ones with A/B ratios."""
        version = self._get_version(request, object_id)
        return self._publish_page(request, [version], action=False)

    @admin.action(description="Publish selected versions…", permissions=["publish"])
    def publish_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        chosen = list(queryset.select_related("chat_model").order_by("chat_model__name", "number"))
        return self._publish_page(request, chosen, action=True)

    @admin.action(description="Unpublish selected versions", permissions=["publish"])
    def unpublish_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        for version in queryset.select_related("chat_model"):
            record = services.version_unpublish(version=version, user=request.user)
            if record is not None:
                self._log_publish(request, version.chat_model, [record])

    @admin.action(description="Copy selected versions into new drafts", permissions=["add"])
    def copy_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        for version in queryset.select_related("chat_model").order_by("chat_model__name", "number"):
            new = services.version_copy(version=version, created_by=request.user)
            self.log_addition(request, new, f"Copied from v{version.number}.")
            self.message_user(request, f"Copied {version} into new draft {new}.", messages.SUCCESS)

    @admin.action(description="Compare two selected versions", permissions=["view"])
    def compare_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        pair = list(queryset.order_by("number")[:3])
        if len(pair) != 2 or pair[0].chat_model_id != pair[1].chat_model_id:
            self.message_user(request, "Select exactly two versions of the same chat model to compare.", messages.ERROR)
            return None
        diff = _url("chatmodel_diff", pair[0].chat_model_id)
        return HttpResponseRedirect(f"{diff}?a={pair[0].number}&b={pair[1].number}")

    # -- playground

    def _playground_allowed(self, request: HttpRequest, version: Version) -> None:
        if not (request.user.is_staff and self.has_view_permission(request, version)):
            raise PermissionDenied

    def playground_start_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: start a playground session on this version (published or not); GET: a page with that button."""
        version = self._get_version(request, object_id)
        self._playground_allowed(request, version)
        if request.method == "POST":
            session = services.session_create(
                chat_model=version.chat_model,
                version=version,
                user=request.user,
                is_playground=True,
                metadata={"playground": True},
            )
            return HttpResponseRedirect(_url("version_playground_session", version.pk, session.uuid))
        return self._playground_page(request, version, None)

    def playground_view(self, request: HttpRequest, object_id: str, session_uuid: uuid.UUID) -> HttpResponse:
        """The playground: chat with this version over the session websocket, tokens and cost per turn."""
        version = self._get_version(request, object_id)
        self._playground_allowed(request, version)
        session = (
            Session.objects.filter(uuid=session_uuid, version=version, is_playground=True)
            .select_related("chat_model", "version")
            .first()
        )
        if session is None or (session.user_id != request.user.pk and not request.user.is_superuser):
            raise Http404("No such playground session.")
        return self._playground_page(request, version, session)

    def _playground_page(self, request: HttpRequest, version: Version, session: Session | None) -> HttpResponse:
        history: list[Message] = []
        totals: dict[str, Any] = {}
        if session is not None:
            history = list(Message.objects.filter(session=session).select_related("run").order_by("-seq")[:200])[::-1]
            totals = Run.objects.filter(session=session).aggregate(
                prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
                completion_tokens=Coalesce(Sum("completion_tokens"), 0),
                cost=Sum("cost"),
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Playground: {version}",
            "version": version,
            "session": session,
            "history": history,
            "totals": totals,
            "start_url": _url("version_playground", version.pk),
            "change_url": _url("version_change", version.pk),
            "session_admin_url": _url("session_change", session.pk) if session else None,
            "config": {
                "sessionUuid": str(session.uuid) if session else None,
                "wsPath": f"/ws/chatmodel/sessions/{session.uuid}/" if session else None,
                "messagesUrl": _messages_url(session) if session else None,
                "clientUrl": static("chatmodel_app/chatmodel.js"),
            },
        }
        return TemplateResponse(request, "admin/chatmodel_app/version/playground.html", context)


# --- sessions and runs (read-only) -----------------------------------------------------------------


class _ReadOnly:
    """Records of what happened: viewable and deletable, never edited or added by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _search_by_uuid(queryset: QuerySet, term: str, *fields: str) -> QuerySet | None:
    value = _as_uuid(term)
    if value is None:
        return None
    query = Q()
    for name in fields:
        query |= Q(**{name: value})
    return queryset.filter(query)


@admin.register(Session)
class SessionAdmin(_ReadOnly, admin.ModelAdmin):
    """A session's conversation in order, a page at a time (the newest page first), with its runs' usage."""

    list_display = (
        "uuid",
        "chat_model",
        "version_number",
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
        (None, {"fields": ("uuid", "chat_model", "version", "user", "is_playground", "created_at", "updated_at")}),
        ("Details", {"fields": ("metadata", "summary", "summary_until_seq", "active_run_uuid", "lease_expires_at")}),
    )

    class Media:
        css = {"all": _CSS}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("chat_model", "version", "user")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        found = _search_by_uuid(queryset, search_term, "uuid")
        if found is not None:
            return found, False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="version", ordering="version__number")
    def version_number(self, obj: Session) -> str:
        return f"v{obj.version.number}"

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
        rows = Message.objects.filter(session=session).select_related("run").order_by("seq")
        paginator = Paginator(rows, conf.ADMIN_MESSAGES_PER_PAGE)
        page = paginator.get_page(request.GET.get("page") or paginator.num_pages)
        items: list[dict[str, Any]] = [{"message": m} for m in page.object_list]
        if items:
            first, last = items[0]["message"].seq, items[-1]["message"].seq
            failed = Run.objects.filter(session=session, status__in=_FAILED, last_seq__gte=first, last_seq__lte=last)
            # A failed run stored no message: show it after the last message it was given.
            after: dict[int, list[Run]] = {}
            for run in failed.order_by("created_at"):
                after.setdefault(run.last_seq, []).append(run)
            items = [
                entry
                for item in items
                for entry in [item, *({"failed_run": r} for r in after.get(item["message"].seq, []))]
            ]
        totals = Run.objects.filter(session=session).aggregate(
            runs=Count("pk"),
            failed=Count("pk", filter=Q(status__in=_FAILED)),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            cost=Sum("cost"),
        )
        return {
            "conversation": items,
            "page": page,
            "paginator": paginator,
            "page_range": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
            "totals": totals,
            "runs_url": _url("run_changelist") + f"?q={session.uuid}&playground=all",
        }


@admin.register(Run)
class RunAdmin(_ReadOnly, admin.ModelAdmin):
    """Every model call with status, latency, time to first token, tokens, cost and error; usage per chat model."""

    # What people scan for first comes first: the list is wider than a laptop screen.
    list_display = (
        "short_uuid",
        "version_label",
        "status",
        "tokens",
        "cost_usd",
        "latency",
        "first_token",
        "error",
        "model",
        "created_at",
    )
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
        css = {"all": _CSS}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("version__chat_model", "session")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        found = _search_by_uuid(queryset, search_term, "uuid", "session__uuid")
        if found is not None:
            return found, False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="run")
    def short_uuid(self, obj: Run) -> str:
        return str(obj.uuid)[:8]

    @admin.display(description="chat model and version", ordering="version__chat_model__name")
    def version_label(self, obj: Run) -> str:
        return f"{obj.version.chat_model.name} v{obj.version.number}"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: Run) -> str:
        return "-" if obj.latency_ms is None else f"{obj.latency_ms} ms"

    @admin.display(description="first token", ordering="time_to_first_token_ms")
    def first_token(self, obj: Run) -> str:
        return "-" if obj.time_to_first_token_ms is None else f"{obj.time_to_first_token_ms} ms"

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
        return format_html('<a href="{}">{}</a>', _url("session_change", obj.session_id), obj.session.uuid)

    @admin.display(description="error log")
    def error_log_text(self, obj: Run) -> str:
        return format_html('<pre class="chatmodel-pre">{}</pre>', obj.error_log) if obj.error_log else "-"

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        extra = {"usage": selectors.chat_model_usage(), **(extra_context or {})}
        return super().changelist_view(request, extra)
