"""Who may use the API, who may read a config, and whose sessions are whose."""

from __future__ import annotations

from typing import Any, Literal

from rest_framework.permissions import BasePermission

from ..conf import conf
from ..models import Session

Access = Literal["read", "write"] | None


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


def session_access(user: Any, session: Session) -> Access:
    """What ``user`` may do with ``session``: its owner writes, staff read, the rest see nothing.

    Sessions without a user (from the Python API, or anonymous callers) are staff-readable only,
    unless anonymous access is on: then their uuid is the key (admin playground sessions excepted).
    """
    authenticated = bool(user and user.is_authenticated)
    if session.user_id is not None and authenticated and session.user_id == user.pk:
        return "write"
    if session.user_id is None and not session.is_playground and conf.API_ALLOW_ANONYMOUS:
        return "write"
    if authenticated and (user.is_staff or user.is_superuser):
        return "read"
    return None
