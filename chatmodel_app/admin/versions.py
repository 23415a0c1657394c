"""The version editor: read-only once a version has served a session; save as new, copies, and its extra pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.cache import cache_control

from .. import llm, selectors, services
from ..exceptions import ChatModelError
from ..llm.offline import MODEL as OFFLINE_MODEL
from ..models import Version
from ..services.labels import version_labels
from ..validation import VERSION_FIELDS
from .base import CSS, admin_url, object_or_404
from .diff import pretty
from .forms import VersionForm
from .playground import PlaygroundMixin
from .publishing import PublishingMixin

if TYPE_CHECKING:
    from django.contrib.admin import ActionLocation  # new in Django 6.1


class _ServiceError(Exception):
    """A service refused a save the form had accepted (e.g. the version was used meanwhile)."""


def _missing_keys(version: Version) -> list[str]:
    """Unset key variables of the provider profiles a version (or its fallbacks) uses."""
    from ..llm.providers import missing_key

    return sorted({v for v in (missing_key(m) for m in [version.model, *(version.fallbacks or [])]) if v})


def _pre(value: Any) -> str:
    return format_html('<pre class="chatmodel-pre">{}</pre>', pretty(value)) if value else "-"


class VersionAdmin(PublishingMixin, PlaygroundMixin, admin.ModelAdmin):
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
    publication_fields = ("number", "uuid", "is_published", "ratio", "served_by_labels", "created_by", "created_at")

    class Media:
        css = {"all": CSS}
        js = ("chatmodel_app/admin/editor.js",)

    # -- list

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        versions = super().get_queryset(request).select_related("chat_model", "created_by")
        return selectors.versions_annotate_in_use(versions)

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

    def get_actions(self, request: HttpRequest, action_location: ActionLocation | None = None) -> dict[str, Any]:
        # Django 6.1 passes the page the actions are for (and warns about overrides that do not take it);
        # Django 5.2 has no such parameter, so it is passed on only when given.
        location = {} if action_location is None else {"action_location": action_location}
        actions = super().get_actions(request, **location)
        # Versions are history: drafts are deleted one at a time from their page, never in bulk.
        actions.pop("delete_selected", None)
        return actions

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
        diff = admin_url("chatmodel_diff", pair[0].chat_model_id)
        return HttpResponseRedirect(f"{diff}?a={pair[0].number}&b={pair[1].number}")

    # -- permissions

    def _in_use(self, obj: Version) -> bool:
        # get_queryset annotates it; a version from elsewhere asks once and keeps the answer the same way.
        in_use: bool | None = getattr(obj, "_in_use", None)
        if in_use is None:
            in_use = services.version_in_use(version=obj)
            vars(obj)["_in_use"] = in_use
        return in_use

    def has_change_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        # A version that has served a session is shown read-only (Django's view-only page).
        return super().has_change_permission(request, obj) and not (obj is not None and self._in_use(obj))

    def has_delete_permission(self, request: HttpRequest, obj: Version | None = None) -> bool:
        # A version a label serves is not deleted from under it: move the label first.
        if obj is not None and (obj.is_published or self._in_use(obj) or version_labels(version=obj)):
            return False
        return super().has_delete_permission(request, obj)

    # -- the editor

    def get_fieldsets(self, request: HttpRequest, obj: Version | None = None) -> list:
        # A read-only version shows its JSON indented, as the editor does.
        json_fields = ("params_json", "tools_json") if obj is not None and self._in_use(obj) else ("params", "tools")
        variables = "variables_json" if obj is not None and self._in_use(obj) else "variables"
        fieldsets = [
            (None, {"fields": ("chat_model", "model", "system_prompt", variables)}),
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
        if obj is None:
            return ()
        return ("chat_model", "params_json", "tools_json", "variables_json", *self.publication_fields)

    @admin.display(description="params")
    def params_json(self, obj: Version) -> str:
        return _pre(obj.params)

    @admin.display(description="functions / tools")
    def tools_json(self, obj: Version) -> str:
        return _pre(obj.tools)

    @admin.display(description="variables")
    def variables_json(self, obj: Version) -> str:
        return _pre(obj.variables)

    @admin.display(description="labels")
    def served_by_labels(self, obj: Version) -> str:
        """The labels that serve this version (docs/prompts.md): production when it is published, staging, ..."""
        return ", ".join(version_labels(version=obj)) or "-"

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        chat_model_id = str(initial.get("chat_model") or "")
        latest = None
        if chat_model_id.isdigit():
            latest = selectors.version_latest(chat_model_id=int(chat_model_id))
        # A new version starts from the newest one of its chat model, or from the offline model.
        if latest is not None:
            initial.update({name: getattr(latest, name) for name in VERSION_FIELDS if name != "memo"})
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
            # Words first: the admin capitalises a message's first letter, and names are shown as typed.
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: Version, form: VersionForm, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in VERSION_FIELDS if name in form.cleaned_data}
        try:
            if change:
                saved = services.version_update(version=obj, **fields)
            else:
                saved = services.version_create(
                    chat_model=form.cleaned_data["chat_model"], created_by=request.user, **fields
                )
        except ChatModelError as exc:
            raise _ServiceError(str(exc)) from exc
        for field in Version._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))

    def response_add(self, request: HttpRequest, obj: Version, post_url_continue=None) -> HttpResponse:
        if "_addanother" not in request.POST and "_popup" not in request.POST:
            # A new draft is for editing and trying: stay on it.
            post = request.POST.copy()
            post["_continue"] = "1"
            # The stubs type request.POST as immutable; Django lets a view replace it, and response_add reads it.
            request.POST = post  # type: ignore[assignment]
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
            "known_models_url": admin_url("version_known_models"),
            "show_save_and_add_another": False,
            **(extra_context or {}),
        }
        return super().add_view(request, form_url, extra)

    def _version_context(self, request: HttpRequest, version: Version) -> dict[str, Any]:
        targets = selectors.version_diff_targets(version=version)
        previous, published = targets["previous"], targets["published"]
        diff = admin_url("chatmodel_diff", version.chat_model_id)
        return {
            "show_save_and_add_another": False,
            "version_in_use": self._in_use(version),
            "known_models_url": admin_url("version_known_models"),
            "can_publish": self.has_publish_permission(request),
            "can_add": self.has_add_permission(request),
            "publish_url": admin_url("version_publish", version.pk),
            "copy_url": admin_url("version_copy", version.pk),
            "playground_url": admin_url("version_playground", version.pk),
            "diff_previous_url": f"{diff}?a={previous}&b={version.number}" if previous else None,
            "diff_published_url": f"{diff}?a={published}&b={version.number}" if published else None,
            "diff_url": f"{diff}?b={version.number}",
            "sessions_url": admin_url("session_changelist")
            + f"?chat_model__id__exact={version.chat_model_id}&version={version.pk}&playground=all",
            "runs_url": admin_url("run_changelist")
            + f"?version__chat_model__id__exact={version.chat_model_id}&version={version.pk}&playground=all",
        }

    # -- copies

    def _save_as_new(self, request: HttpRequest, object_id: str) -> HttpResponse | None:
        """Copy the version, with the edits on the page applied, into a new draft; None when the edits are invalid."""
        version = self.get_object(request, unquote(object_id))
        if version is None:
            raise Http404("No such version.")
        if not self.has_add_permission(request):
            raise PermissionDenied
        overrides: dict[str, Any] = {}
        if not self._in_use(version):
            original = {name: getattr(version, name) for name in VERSION_FIELDS}
            Form = self.get_form(request, version, change=True)
            form = Form(request.POST, request.FILES, instance=version)
            if not form.is_valid():
                return None  # the normal change view shows the errors (it saves nothing on invalid input)
            overrides = {n: form.cleaned_data[n] for n in VERSION_FIELDS if n in form.cleaned_data}
            if "memo" not in form.changed_data:
                overrides.pop("memo", None)
            for name, value in original.items():
                setattr(version, name, value)  # the form wrote the edits onto the instance; the copy starts clean
        return self._copy(request, version, overrides)

    def _copy(self, request: HttpRequest, version: Version, overrides: dict[str, Any]) -> HttpResponse:
        try:
            new = services.version_copy(version=version, created_by=request.user, **overrides)
        except ChatModelError as exc:
            self.message_user(request, f"Not copied: {exc}", messages.ERROR)
            return HttpResponseRedirect(admin_url("version_change", version.pk))
        self.log_addition(request, new, f"Copied from v{version.number}.")
        self.message_user(
            request, f"Saved as new draft {new} (from v{version.number}, which is unchanged).", messages.SUCCESS
        )
        return HttpResponseRedirect(admin_url("version_change", new.pk))

    def copy_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: copy this version, as it is stored, into a new draft."""
        version = object_or_404(self, request, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(admin_url("version_change", version.pk))
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self._copy(request, version, {})

    # -- extra pages

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("known-models/", view(self.known_models_view), name="chatmodel_app_version_known_models"),
            path("<path:object_id>/copy/", view(self.copy_view), name="chatmodel_app_version_copy"),
            *self.publish_urls(),
            *self.playground_urls(),
            *super().get_urls(),
        ]

    @staticmethod
    @cache_control(private=True, max_age=3600)
    def known_models_view(request: HttpRequest) -> JsonResponse:
        """Model strings for the editor's suggestions (importing litellm once, on first use)."""
        if not request.user.is_staff:
            raise PermissionDenied
        return JsonResponse({"models": llm.known_models()})
