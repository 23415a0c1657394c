"""Rules on feedback (rating, comment) and on named conversations (title, archive flag, search text).

Every door calls these: REST serializers, the websocket consumer, the Python API (through ``services``).
Each raises ``InvalidParams`` with ``field`` set, so REST puts the message on that field.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import InvalidParams
from .limits import text_check

# The longest feedback comment, in characters.
MAX_FEEDBACK_COMMENT_CHARS = 2000
# The longest title (the column's size), in characters.
MAX_TITLE_CHARS = 200
# The longest search text, in characters: a search is a few words, not a document.
MAX_SEARCH_CHARS = 200

_RATINGS = {"up": 1, "down": -1, 1: 1, -1: -1, "+1": 1, "-1": -1}


def feedback_rating_clean(value: Any) -> int:
    """A rating as stored: 1 (thumbs up) or -1 (thumbs down); "up"/"down" and 1/-1 are accepted."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidParams('rating must be "up" or "down" (or 1 or -1).', field="rating")
    rating = _RATINGS.get(value.strip().lower() if isinstance(value, str) else value)
    if rating is None:
        raise InvalidParams(f'rating must be "up" or "down" (or 1 or -1), not {value!r}.', field="rating")
    return rating


def feedback_comment_clean(value: Any) -> str:
    """An optional comment: text up to MAX_FEEDBACK_COMMENT_CHARS characters (None means none)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParams("comment must be a string.", field="comment")
    text_check(value, "comment", InvalidParams)
    value = value.strip()
    if len(value) > MAX_FEEDBACK_COMMENT_CHARS:
        raise InvalidParams(
            f"comment is longer than {MAX_FEEDBACK_COMMENT_CHARS} characters ({len(value)}).", field="comment"
        )
    return value


def title_clean(value: Any) -> str:
    """A title a user sets: one line of text up to MAX_TITLE_CHARS characters ("" clears it)."""
    if not isinstance(value, str):
        raise InvalidParams("title must be a string.", field="title")
    text_check(value, "title", InvalidParams)
    value = " ".join(value.split())  # one line: newlines and runs of spaces become single spaces
    if len(value) > MAX_TITLE_CHARS:
        raise InvalidParams(f"title is longer than {MAX_TITLE_CHARS} characters ({len(value)}).", field="title")
    return value


def archived_clean(value: Any) -> bool:
    """The ``archived`` flag of an update: true or false, nothing else."""
    if not isinstance(value, bool):
        raise InvalidParams("archived must be true or false.", field="archived")
    return value


def search_clean(value: Any) -> str:
    """A search text: up to MAX_SEARCH_CHARS characters, surrounding spaces dropped ("" means no search)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParams("q must be a string.", field="q")
    text_check(value, "q", InvalidParams)
    value = " ".join(value.split())
    if len(value) > MAX_SEARCH_CHARS:
        raise InvalidParams(f"q is longer than {MAX_SEARCH_CHARS} characters ({len(value)}).", field="q")
    return value


ARCHIVED_FILTERS = ("false", "true", "all")


def archived_filter_clean(value: Any) -> bool | None:
    """The list's ``archived`` filter: "false" (the default: active only), "true" (archived only) or "all"."""
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or value.lower() not in ARCHIVED_FILTERS:
        raise InvalidParams('archived must be "false" (the default), "true" or "all".', field="archived")
    return {"false": False, "true": True, "all": None}[value.lower()]
