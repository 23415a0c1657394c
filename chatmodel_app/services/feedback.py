"""Feedback on replies: a thumbs up or down, with an optional comment, from the session's user.

One feedback per assistant message (a session has one user, and only its writer may give it); giving it
again updates it. The doors check who may write the session (``access.session_access``) before calling here.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from .. import events
from ..conf import conf
from ..exceptions import InvalidParams, MessageNotFound
from ..models import Feedback, Message, Session
from ..validation import feedback_comment_clean, feedback_rating_clean, message_seq_clean

# The event every socket on the session gets when feedback is given, changed or taken back.
FEEDBACK_UPDATED = "feedback.updated"


def _message(session: Session, seq: Any) -> Message:
    """The session's assistant message ``seq``; MessageNotFound, or InvalidParams for another role."""
    seq = message_seq_clean(seq)
    message = Message.objects.filter(session=session, seq=seq).first() if seq else None
    if message is None:
        raise MessageNotFound(f"Session {session.uuid} has no message {seq}.")
    if message.role != Message.Role.ASSISTANT:
        raise InvalidParams(
            f"Message {seq} is a {message.role} message: feedback is given on assistant replies.", field="seq"
        )
    return message


def feedback_json(feedback: Feedback | None) -> dict[str, Any] | None:
    """Feedback as every door shows it: ``{"rating": "up"|"down", "comment", "updated_at"}``, or None."""
    from ..selectors import timestamp

    if feedback is None:
        return None
    return {
        "rating": "up" if feedback.rating == Feedback.Rating.UP else "down",
        "comment": feedback.comment,
        "updated_at": timestamp(feedback.updated_at),
    }


def feedback_set(*, session: Session, seq: Any, rating: Any, comment: Any = "", user: Any = None) -> Feedback:
    """Give (or change) the feedback on the session's assistant message ``seq``; InvalidParams on bad input."""
    rating = feedback_rating_clean(rating)
    comment = feedback_comment_clean(comment)
    message = _message(session, seq)
    owner = user if getattr(user, "is_authenticated", False) else None
    fields = {"rating": rating, "comment": comment, "version_id": session.version_id, "user": owner}
    try:
        with transaction.atomic():
            feedback, _created = Feedback.objects.update_or_create(message=message, defaults=fields)
    except IntegrityError:
        # Two first feedbacks at once on one message: the other one was stored first; this one updates it.
        Feedback.objects.filter(message=message).update(**fields)
        feedback = Feedback.objects.get(message=message)
    _publish(session, seq=message.seq, feedback=feedback)
    return feedback


def feedback_delete(*, session: Session, seq: Any) -> bool:
    """Take back the feedback on message ``seq``; whether there was one."""
    message = _message(session, seq)
    deleted, _ = Feedback.objects.filter(message=message).delete()
    # Even when there was none: a client waiting for the answer to its request gets it.
    _publish(session, seq=message.seq, feedback=None)
    return bool(deleted)


def feedback_get(*, session: Session, seq: Any) -> Feedback | None:
    """The feedback on message ``seq``, or None."""
    return Feedback.objects.filter(message=_message(session, seq)).first()


def _publish(session: Session, *, seq: int, feedback: Feedback | None) -> None:
    """Tell every socket on the session (the user's other tabs), as messages.added does."""
    if conf.PUBLISH_EVENTS:
        event = events.RunEvents(str(session.uuid), None).make(
            FEEDBACK_UPDATED, message_seq=seq, feedback=feedback_json(feedback)
        )
        events.publish(event)


# The commented replies an export keeps per version, newest first.
EXPORT_COMMENTS_PER_VERSION = 100


def feedback_export(*, chat_model_ids: Any) -> dict[int, dict[str, Any]]:
    """Per version id (of these chat models): ``{"feedback": {"up", "down", "comments": [...]}}`` for the export.

    Two queries whatever the number of versions. Versions without feedback are left out, so their export
    is as before. An import reads the key and ignores it: feedback belongs to sessions, which are not exported.
    """
    from django.db.models import Count, Q

    rows = (
        Feedback.objects.filter(version__chat_model__in=chat_model_ids)
        .values("version_id")
        .annotate(up=Count("pk", filter=Q(rating=1)), down=Count("pk", filter=Q(rating=-1)))
        .order_by()
    )
    out: dict[int, dict[str, Any]] = {
        row["version_id"]: {"feedback": {"up": row["up"], "down": row["down"], "comments": []}} for row in rows
    }
    commented = (
        Feedback.objects.filter(version__chat_model__in=chat_model_ids)
        .exclude(comment="")
        .select_related("message")
        .order_by("version_id", "-updated_at", "-pk")
    )
    for item in commented.iterator():
        comments = out[item.version_id]["feedback"]["comments"]
        if len(comments) < EXPORT_COMMENTS_PER_VERSION:
            comments.append(
                {
                    "rating": "up" if item.rating == Feedback.Rating.UP else "down",
                    "comment": item.comment,
                    "reply": item.message.content or "",
                    "at": item.updated_at.isoformat(),
                }
            )
    return out
