"""Who may use the API and who may read a config; whose sessions are whose is ``chatmodel_app.access``."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from ..access import Access, session_access
from ..conf import conf

# Re-exported: hosts imported the session rule from here before it moved to chatmodel_app.access.
__all__ = ["Access", "CanReadConfig", "IsAuthenticatedOrAnonymousAllowed", "session_access"]


class IsAuthenticatedOrAnonymousAllowed(BasePermission):
    """Authenticated users; anyone when ``CHATMODEL_API_ALLOW_ANONYMOUS`` is on."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) or conf.API_ALLOW_ANONYMOUS


class CanReadConfig(BasePermission):
    """The Django permission ``CHATMODEL_API_CONFIG_PERMISSION``: the config reveals the system prompt."""

    message = "Reading a chat model's config needs the permission named by CHATMODEL_API_CONFIG_PERMISSION."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(conf.API_CONFIG_PERMISSION))
