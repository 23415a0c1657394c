"""Who may see or change a session: one rule for every door (REST, websocket, the example site's pages)."""

from __future__ import annotations

from typing import Any, Literal

from .conf import conf
from .models import Session

# "write": may add messages, run and cancel; "read": may only watch; None: may not know the session exists.
Access = Literal["read", "write"] | None


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
