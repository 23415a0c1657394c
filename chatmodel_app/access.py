"""Who may see or change a session: one rule for every door (REST, websocket, the example site's pages)."""

from __future__ import annotations

from typing import Any, Literal

from .conf import conf
from .models import Session

# "write": may add messages, run and cancel; "read": may only watch; None: may not know the session exists.
Access = Literal["read", "write"] | None

# Reading other users' sessions is a grant of its own (the admin asks for the same one), never the staff flag.
SESSION_READ_PERMISSION = "chatmodel_app.view_session"
# A playground session runs any version, drafts included, at the server's cost: as much as editing versions.
PLAYGROUND_RUN_PERMISSION = "chatmodel_app.change_version"


def session_access(user: Any, session: Session) -> Access:
    """What ``user`` may do with ``session``: its owner writes, holders of ``view_session`` read, others nothing.

    Sessions without a user (from the Python API, or anonymous callers) are readable only with that permission,
    unless anonymous access is on: then their uuid is the key (admin playground sessions excepted). A playground
    session's owner writes only while they may change versions (``change_version``); else they only read it.
    """
    authenticated = bool(user and user.is_authenticated)
    if session.user_id is not None and authenticated and session.user_id == user.pk:
        if session.is_playground and not user.has_perm(PLAYGROUND_RUN_PERMISSION):
            return "read"
        return "write"
    if session.user_id is None and not session.is_playground and conf.API_ALLOW_ANONYMOUS:
        return "write"
    if authenticated and user.has_perm(SESSION_READ_PERMISSION):
        return "read"
    return None
