"""Labels on the chat model page: see each label's versions, move a label, and roll it back in one step.

``production`` is what "deploy" serves (the published versions); ``staging`` and any other label are
named sets of versions with A/B ratios too (``ChatModel(name, version="staging")``). Moves, deletions
and rollbacks go through ``services.labels``, so each is recorded as a publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path

from ..conf import conf
from ..exceptions import InvalidParams
from ..models import ChatModel, Version
from ..services import labels as label_services
from ..validation import PRODUCTION, label_name_clean
from .base import admin_url, object_or_404

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    ChatModelAdminBase = ModelAdmin[ChatModel]
else:
    ChatModelAdminBase = object


def shown_set(ratios: dict[int, float]) -> str:
    """A label's set as the admin writes it: ``v2 (0.8), v3 (0.2)``."""
    return ", ".join(f"v{n} ({r:g})" for n, r in sorted(ratios.items())) or "nothing"


class LabelMoveForm(forms.Form):
    """A label name and, per version of the chat model, its A/B ratio in the label's new set (blank: not in it)."""

    label = forms.CharField(
        max_length=50,
        help_text="production (what 'deploy' serves), staging, or any name: lowercase letters, digits, '-' or '_'.",
    )

    def __init__(self, *args: Any, versions: list[Version], current: dict[int, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.versions = versions
        for version in versions:
            self.fields[f"ratio_{version.number}"] = forms.FloatField(
                required=False,
                min_value=0.0,
                initial=current.get(version.number),
                label=f"A/B ratio of v{version.number}",
                widget=forms.NumberInput(attrs={"step": "any", "min": "0", "class": "chatmodel-ratio"}),
            )

    def clean_label(self) -> str:
        try:
            return label_name_clean(self.cleaned_data["label"])
        except InvalidParams as exc:
            raise forms.ValidationError(str(exc)) from None

    def ratios(self) -> dict[int, float]:
        """The new set: the versions given a ratio above 0 (call after is_valid())."""
        return {
            v.number: self.cleaned_data[f"ratio_{v.number}"]
            for v in self.versions
            if self.cleaned_data.get(f"ratio_{v.number}")
        }

    def rows(self) -> list[dict[str, Any]]:
        return [{"version": v, "ratio": self[f"ratio_{v.number}"]} for v in self.versions]

    def clean(self) -> dict[str, Any]:
        super().clean()
        if not self.errors and not self.ratios():
            raise forms.ValidationError("Give at least one version an A/B ratio above 0.")
        return self.cleaned_data


class LabelsMixin(ChatModelAdminBase):
    """ChatModelAdmin's label pages: move (``<id>/labels/move/``), roll back and delete (``<id>/labels/<name>/...``)."""

    def label_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/labels/move/", view(self.label_move_view), name="chatmodel_app_chatmodel_label_move"
            ),
            path(
                "<path:object_id>/labels/<slug:label>/rollback/",
                view(self.label_rollback_view),
                name="chatmodel_app_chatmodel_label_rollback",
            ),
            path(
                "<path:object_id>/labels/<slug:label>/delete/",
                view(self.label_delete_view),
                name="chatmodel_app_chatmodel_label_delete",
            ),
        ]

    def has_label_permission(self, request: HttpRequest) -> bool:
        """Moving a label is publishing: the same permission."""
        return request.user.has_perm(f"{self.opts.app_label}.publish_version")

    def labels_context(
        self, request: HttpRequest, chat_model: ChatModel, published: list[Version] | None = None
    ) -> dict[str, Any]:
        """The chat model page's Labels section (``published``: the chat model's published versions, if at hand)."""
        return {
            "labels": label_services.labels_overview(chat_model=chat_model, published=published),
            "can_move_labels": self.has_label_permission(request),
            "label_move_url": admin_url("chatmodel_label_move", chat_model.pk),
        }

    def _label_chat_model(self, request: HttpRequest, object_id: str) -> ChatModel:
        chat_model = object_or_404(self, request, object_id)
        if not self.has_label_permission(request):
            raise PermissionDenied
        return chat_model

    def _page(self, request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
        base = {**self.admin_site.each_context(request), "opts": self.opts}
        return TemplateResponse(
            request, f"admin/chatmodel_app/chatmodel/{template}", {**base, **context}, status=status
        )

    def _report(self, request: HttpRequest, chat_model: ChatModel, changed: bool, what: str) -> None:
        if not changed:
            self.message_user(request, f"Chat model {chat_model}: nothing changed; the label already had that set.")
            return
        self.log_change(request, chat_model, what[0].upper() + what[1:] + ".")
        self.message_user(request, f"Chat model {chat_model}: {what}.", messages.SUCCESS)

    def label_move_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Point a label (new or existing) at a set of versions with A/B ratios."""
        chat_model = self._label_chat_model(request, object_id)
        versions = list(
            Version.objects.filter(chat_model=chat_model).order_by("-number")[: conf.ADMIN_VERSIONS_ON_PAGE]
        )
        name = request.GET.get("label") or ""
        sets = label_services.label_sets(chat_model=chat_model)
        current = sets.get(name, {})
        form = LabelMoveForm(
            request.POST if request.method == "POST" else None,
            versions=versions,
            current=current,
            initial={"label": name or "staging"},
        )
        if request.method == "POST" and form.is_valid():
            label, ratios = form.cleaned_data["label"], form.ratios()
            try:
                records = label_services.label_move(
                    chat_model=chat_model, label=label, ratios=ratios, user=request.user
                )
            except InvalidParams as exc:
                form.add_error(None, str(exc))
            else:
                self._report(request, chat_model, bool(records), f"moved label {label} to {shown_set(ratios)}")
                return HttpResponseRedirect(admin_url("chatmodel_change", chat_model.pk) + "#labels")
        return self._page(
            request,
            "label_move.html",
            {
                "title": f"Move a label of {chat_model}",
                "chat_model": chat_model,
                "form": form,
                "rows": form.rows(),
                "sets": {n: shown_set(r) for n, r in sets.items()},
                "change_url": admin_url("chatmodel_change", chat_model.pk),
            },
            status=400 if request.method == "POST" else 200,
        )

    def label_rollback_view(self, request: HttpRequest, object_id: str, label: str) -> HttpResponse:
        """GET: what a rollback of the label would do; POST: do it (one step, recorded as a publish)."""
        chat_model = self._label_chat_model(request, object_id)
        current = label_services.label_sets(chat_model=chat_model).get(label, {})
        try:
            target = label_services.label_rollback_target(chat_model=chat_model, label=label)
        except InvalidParams as exc:
            self.message_user(request, f"Not rolled back: {exc}", messages.ERROR)
            return HttpResponseRedirect(admin_url("chatmodel_change", chat_model.pk) + "#labels")
        if request.method == "POST":
            try:
                records = label_services.label_rollback(chat_model=chat_model, label=label, user=request.user)
            except InvalidParams as exc:
                self.message_user(request, f"Not rolled back: {exc}", messages.ERROR)
            else:
                what = f"rolled label {label} back from {shown_set(current)} to {shown_set(target)}"
                self._report(request, chat_model, bool(records), what)
            return HttpResponseRedirect(admin_url("chatmodel_change", chat_model.pk) + "#labels")
        last = label_services.label_last_move(chat_model=chat_model, label=label)
        return self._page(
            request,
            "label_confirm.html",
            {
                "title": f"Roll back label {label} of {chat_model}?",
                "chat_model": chat_model,
                "label": label,
                "action": "rollback",
                "current": shown_set(current),
                "target": shown_set(target),
                "last_move": last,
                "is_production": label == PRODUCTION,
                "change_url": admin_url("chatmodel_change", chat_model.pk),
            },
        )

    def label_delete_view(self, request: HttpRequest, object_id: str, label: str) -> HttpResponse:
        """GET: confirm; POST: remove a label other than production (recorded: a rollback brings it back)."""
        chat_model = self._label_chat_model(request, object_id)
        current = label_services.label_sets(chat_model=chat_model).get(label)
        if current is None or label == PRODUCTION:
            self.message_user(request, f"Chat model {chat_model} has no label {label!r} to delete.", messages.ERROR)
            return HttpResponseRedirect(admin_url("chatmodel_change", chat_model.pk) + "#labels")
        if request.method == "POST":
            label_services.label_delete(chat_model=chat_model, label=label, user=request.user)
            self._report(request, chat_model, True, f"deleted label {label} ({shown_set(current)})")
            return HttpResponseRedirect(admin_url("chatmodel_change", chat_model.pk) + "#labels")
        return self._page(
            request,
            "label_confirm.html",
            {
                "title": f"Delete label {label} of {chat_model}?",
                "chat_model": chat_model,
                "label": label,
                "action": "delete",
                "current": shown_set(current),
                "change_url": admin_url("chatmodel_change", chat_model.pk),
            },
        )
