"""Publishing versions from the admin: the publish page and actions, with A/B ratios, each change logged."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path

from .. import selectors, services
from ..exceptions import ChatModelError
from ..models import ChatModel, PublishRecord, Version
from .base import VersionAdminBase, admin_url, object_or_404
from .forms import PublishForm


class PublishingMixin(VersionAdminBase):
    """VersionAdmin's publish page (``<id>/publish/``) and its publish / unpublish actions."""

    def publish_urls(self) -> list:
        view = self.admin_site.admin_view
        return [path("<path:object_id>/publish/", view(self.publish_view), name="chatmodel_app_version_publish")]

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.publish_version")

    def _publish_page(self, request: HttpRequest, chosen: list[Version], *, action: bool) -> HttpResponse | None:
        """The publish form (GET or first action POST), or apply it; None after applying from an action."""
        if not self.has_publish_permission(request):
            raise PermissionDenied
        published = selectors.versions_published(chat_model_ids={v.chat_model_id for v in chosen})
        applying = request.method == "POST" and "apply" in request.POST
        form = PublishForm(request.POST if applying else None, chosen=chosen, published=published)
        if applying and form.is_valid():
            for chat_model, ratios in form.ratios():
                try:
                    records = services.versions_publish(chat_model=chat_model, ratios=ratios, user=request.user)
                except ChatModelError as exc:
                    self.message_user(request, f"Chat model {chat_model}: {exc}", messages.ERROR)
                    continue
                self._log_publish(request, chat_model, records)
            if action:
                return None
            return HttpResponseRedirect(admin_url("version_change", chosen[0].pk))
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
        # Messages start with words, not the name: the admin capitalises a message's first letter.
        if not records:
            self.message_user(
                request, f"Chat model {chat_model}: nothing changed; those versions were already published."
            )
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
        # log_change records any model (the content type comes from the object); the stubs tie it to Version.
        self.log_change(request, chat_model, summary[0].upper() + summary[1:] + ".")  # type: ignore[arg-type]
        self.message_user(request, f"Chat model {chat_model}: {summary}.", messages.SUCCESS)

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Publish this version alone, or alongside published ones with A/B ratios."""
        version = object_or_404(self, request, object_id)
        response = self._publish_page(request, [version], action=False)
        assert response is not None  # only the action's page returns None
        return response

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
