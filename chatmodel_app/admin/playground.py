"""The playground: staff chat with any version (published or not) in a session marked as a playground one."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.urls import NoReverseMatch, path, reverse

from .. import selectors, services
from ..access import PLAYGROUND_RUN_PERMISSION
from ..context.prompt import system_prompt_for
from ..exceptions import InvalidParams
from ..models import Session, Version
from .base import VersionAdminBase, admin_url, object_or_404

# The newest messages a playground page shows; older turns are on the session's admin page.
HISTORY = 200


def messages_url(session: Session) -> str | None:
    """The REST messages endpoint the client resyncs from after a reconnect, when the host mounts the API."""
    try:
        return reverse("chatmodel_api:messages", kwargs={"uuid": str(session.uuid)})
    except NoReverseMatch:
        return None


class PlaygroundMixin(VersionAdminBase):
    """VersionAdmin's playground pages: ``<id>/playground/`` starts a session, ``<id>/playground/<uuid>/`` is it."""

    def playground_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
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
        ]

    def _playground_version(self, request: HttpRequest, object_id: str) -> Version:
        version = object_or_404(self, request, object_id)
        if not request.user.is_staff:
            raise PermissionDenied
        return version

    def playground_start_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: start a playground session on this version (published or not); GET: a page with that button."""
        version = self._playground_version(request, object_id)
        # Running a draft costs money: the permission to change versions, not only to view them.
        if not request.user.has_perm(PLAYGROUND_RUN_PERMISSION):
            raise PermissionDenied
        if request.method == "POST":
            # The values of the version's prompt variables, typed into the start form (var_<name>).
            values = {
                d["name"]: request.POST[f"var_{d['name']}"]
                for d in version.variables or []
                if f"var_{d['name']}" in request.POST
            }
            try:
                session = services.session_create(
                    chat_model=version.chat_model,
                    version=version,
                    user=request.user,
                    is_playground=True,
                    metadata={"playground": True},
                    variables=values,
                )
            except InvalidParams as exc:
                return self._playground_page(request, version, None, values=values, error=str(exc), status=400)
            return HttpResponseRedirect(admin_url("version_playground_session", version.pk, session.uuid))
        return self._playground_page(request, version, None)

    def playground_view(self, request: HttpRequest, object_id: str, session_uuid: uuid.UUID) -> HttpResponse:
        """The playground: chat with this version over the session websocket, tokens and cost per turn."""
        version = self._playground_version(request, object_id)
        session = selectors.playground_session_get(version=version, session_uuid=session_uuid)
        if session is None or (session.user_id != request.user.pk and not request.user.is_superuser):
            raise Http404("No such playground session.")
        return self._playground_page(request, version, session)

    def _playground_page(
        self,
        request: HttpRequest,
        version: Version,
        session: Session | None,
        *,
        values: dict[str, str] | None = None,
        error: str = "",
        status: int = 200,
    ) -> HttpResponse:
        history: list[Any] = []
        totals: dict[str, Any] = {}
        if session is not None:
            newest, _ = selectors.message_page(session=session, limit=HISTORY, order="desc")
            history = newest[::-1]
            totals = selectors.session_run_totals(session=session)
        # The start form asks for each variable: what was typed, else this session's value, else the default.
        shown = values if values is not None else (session.variables if session is not None else {})
        variable_fields = [
            {**d, "field": f"var_{d['name']}", "value": (shown or {}).get(d["name"], d.get("default", ""))}
            for d in version.variables or []
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Playground: {version}",
            "version": version,
            "session": session,
            "history": history,
            "totals": totals,
            "start_url": admin_url("version_playground", version.pk),
            "change_url": admin_url("version_change", version.pk),
            "session_admin_url": admin_url("session_change", session.pk) if session else None,
            "variable_fields": variable_fields,
            "variables_error": error,
            # What this session's runs send: the prompt with its variable values in (context/prompt.py).
            "rendered_prompt": system_prompt_for(version, session) if session is not None else None,
            "config": {
                "sessionUuid": str(session.uuid) if session else None,
                "wsPath": f"/ws/chatmodel/sessions/{session.uuid}/" if session else None,
                "messagesUrl": messages_url(session) if session else None,
                "clientUrl": static("chatmodel_app/chatmodel.js"),
            },
        }
        return TemplateResponse(request, "admin/chatmodel_app/version/playground.html", context, status=status)
