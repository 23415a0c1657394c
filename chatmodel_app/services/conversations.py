"""Named conversations: rename, archive, delete, and the list by last activity with search.

A session's ``title`` is set by its user (``title_source`` "user", never replaced by a generated one) or
generated after its first exchange (``services.titles``). ``archived_at`` takes it out of the default
list. ``last_activity_at`` is set by the same UPDATEs that add messages and store replies (``leases``), so
ordering by it costs no query of its own.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from .. import events
from ..conf import conf
from ..exceptions import SessionBusy
from ..models import ChatModel, Message, Session
from ..validation import archived_clean, search_clean, title_clean

# The event every socket on a session gets when its title or archive state changes.
SESSION_UPDATED = "session.updated"

_UNSET: Any = object()


def conversation_json(session: Session) -> dict[str, Any]:
    """The conversation fields of a session, as events and the doors show them."""
    from ..selectors import timestamp

    return {
        "title": session.title,
        "title_source": session.title_source if session.title_source != "pending" else "",
        "archived": session.archived_at is not None,
        "archived_at": timestamp(session.archived_at),
        "last_activity_at": timestamp(session.last_activity_at),
    }


def conversation_update(*, session: Session, title: Any = _UNSET, archived: Any = _UNSET) -> Session:
    """Rename (``title``; "" clears it) and/or archive or unarchive (``archived``); InvalidParams on bad input.

    A title set here is the user's: a title generated later never replaces it.
    """
    fields: dict[str, Any] = {}
    if title is not _UNSET:
        fields.update(title=title_clean(title), title_source="user")
    if archived is not _UNSET:
        if archived_clean(archived):
            # Archiving again keeps the first date.
            fields["archived_at"] = session.archived_at or timezone.now()
        else:
            fields["archived_at"] = None
    if fields:
        fields["updated_at"] = timezone.now()
        Session.objects.filter(pk=session.pk).update(**fields)
        for key, value in fields.items():
            setattr(session, key, value)
        publish_update(session)
    return session


def conversation_delete(*, session: Session) -> None:
    """Delete the session with its messages, runs and feedback; SessionBusy while a run holds it."""
    now = timezone.now()
    free = Q(active_run_uuid__isnull=True) | Q(lease_expires_at__lt=now)
    with transaction.atomic():
        # Locked and checked in one step, so a run cannot claim the session between the check and the delete.
        row = Session.objects.select_for_update().filter(free, pk=session.pk).first()
        if row is None:
            if Session.objects.filter(pk=session.pk).exists():
                raise SessionBusy(
                    f"Session {session.uuid} has a run in progress: cancel it (or wait for it) before deleting."
                )
            return  # deleted already: deleting is idempotent
        row.delete()


def conversation_list(
    *,
    user: Any,
    chat_model: ChatModel | None = None,
    archived: bool | None = False,
    q: Any = "",
    include_playground: bool = True,
) -> QuerySet[Session]:
    """The user's sessions by last activity, newest first: active ones (``archived`` False, the default),
    archived ones (True) or all (None); with ``q``, those whose title or messages match it.

    On PostgreSQL ``q`` is a full-text search (``websearch_to_tsquery`` over the title and the messages'
    content); elsewhere a case-insensitive substring match on the same text.
    """
    q = search_clean(q)
    if not getattr(user, "is_authenticated", False):
        return Session.objects.none()
    sessions = Session.objects.select_related("chat_model", "version").filter(user=user)
    if chat_model is not None:
        sessions = sessions.filter(chat_model=chat_model)
    if not include_playground:
        sessions = sessions.filter(is_playground=False)
    if archived is not None:
        sessions = sessions.filter(archived_at__isnull=not archived)
    if q:
        sessions = _matching(sessions, q)
    return sessions.order_by("-last_activity_at", "-pk")


def _matching(sessions: QuerySet[Session], q: str) -> QuerySet[Session]:
    """The ``sessions`` whose title or any message matches ``q``: full-text on PostgreSQL, a substring elsewhere."""
    if connection.vendor == "postgresql":
        # Imported here: django.contrib.postgres needs psycopg, which other databases do not install.
        from django.contrib.postgres.search import SearchQuery, SearchVector

        query = SearchQuery(q, search_type="websearch")
        matched = Message.objects.annotate(content_vector=SearchVector("content")).filter(
            session=OuterRef("pk"), content_vector=query
        )
        # A title is also found by a part of a word as typed ("proj" finds "Project plan"), as the sidebar needs.
        return sessions.annotate(title_vector=SearchVector("title")).filter(
            Q(title_vector=query) | Q(title__icontains=q) | Exists(matched)
        )
    said = Message.objects.filter(session=OuterRef("pk"), content__icontains=q)
    return sessions.filter(Q(title__icontains=q) | Exists(said))


def publish_update(session: Session) -> None:
    """Tell every socket on the session that its title or archive state changed."""
    if conf.PUBLISH_EVENTS:
        event = events.RunEvents(str(session.uuid), None).make(SESSION_UPDATED, **conversation_json(session))
        events.publish(event)
