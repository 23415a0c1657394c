"""Conversation titles, made after a session's first exchange.

``run_finished`` (sent when a run ends) calls ``title_after_run``. When the run completed and the session
has no title yet, it claims the session (one conditional UPDATE: ``title_source`` "" -> "pending") and writes
a title: with the offline model (the default ``CHATMODEL_TITLE_MODEL``) from the first user message's words,
with no call; with a real model by one short call, on a thread of its own after the reply went out
(``CHATMODEL_TITLE_BACKGROUND``). Nothing here runs per token, and nothing here can fail a run: a failed
call falls back to the offline title, and its error is logged scrubbed of credentials.

A title the user set (``title_source`` "user") is never replaced: the final write is conditional on the claim.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from django.db import connections

from .. import llm
from ..conf import conf
from ..models import Message, Run, Session
from ..validation import MAX_TITLE_CHARS
from .conversations import publish_update

logger = logging.getLogger("chatmodel_app")

# Words of the first user message an offline title keeps, and the characters of each side the title call reads.
OFFLINE_TITLE_WORDS = 6
TITLE_INPUT_CHARS = 1000
# The longest title a model may write (longer answers are cut at a word).
TITLE_MAX_CHARS = 80
TITLE_MAX_TOKENS = 24
_UNTITLED = "New chat"


def offline_title(text: str | None) -> str:
    """The offline model's title: the first words of ``text``, capitalised, without closing punctuation."""
    words = re.findall(r"\S+", (text or "").strip())[:OFFLINE_TITLE_WORDS]
    title = " ".join(words).strip(" \t\"'`.,;:!?-")
    if not title:
        return _UNTITLED
    return _clip(title[:1].upper() + title[1:])


def _clip(title: str) -> str:
    """One line, at most TITLE_MAX_CHARS characters, cut at a word."""
    title = " ".join(title.split())
    if len(title) <= TITLE_MAX_CHARS:
        return title
    cut = title[:TITLE_MAX_CHARS].rsplit(" ", 1)[0]
    return (cut or title[:TITLE_MAX_CHARS]).rstrip(" ,;:-") + "…"


def clean_model_title(text: str | None) -> str:
    """A model's answer as a title: its first line, quotes, "Title:" and final punctuation taken off."""
    line = next((part for part in (text or "").strip().splitlines() if part.strip()), "")
    line = re.sub(r"^\s*(title|titre|titel)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'`*#“”‘’").strip().rstrip(".!;:,")
    return _clip(line)[:MAX_TITLE_CHARS]


def title_after_run(sender: Any = None, *, run: Run, response: Any, **kwargs: Any) -> None:
    """``run_finished`` receiver: title the session after its first completed exchange. Never raises."""
    try:
        model = conf.TITLE_MODEL
        if model is None or run.status != Run.Status.COMPLETED or getattr(response, "error", False):
            return
        session = run.session if Run.session.is_cached(run) else None
        if session is not None and session.title_source:
            return  # the row in hand already says it has a title: no query
        # The claim: one UPDATE, and only one worker (and only a session still untitled) gets it.
        if not Session.objects.filter(pk=run.session_id, title_source="").update(title_source="pending"):
            if session is not None:
                session.title_source = "auto"  # somebody titled it: later runs of this object skip the query
            return
        if session is not None:
            session.title_source = "pending"
        model = model or run.version.model
        if llm.is_offline(model) or not conf.TITLE_BACKGROUND:
            # Inline, so before the driver publishes run.completed: no event here, which would come first. A client
            # reads the title with the session (REST GET, ChatModel.get_session) once the run has completed.
            reply = getattr(response, "content", None)
            title_generate(session_id=run.session_id, model=model, reply=reply, publish=False)
        else:
            threading.Thread(
                target=_in_thread,
                args=(run.session_id, model, getattr(response, "content", None)),
                name="chatmodel-title",
                daemon=True,
            ).start()
    except Exception:
        logger.exception("chatmodel: could not title the session of run %s", getattr(run, "uuid", None))


def _in_thread(session_id: int, model: str, reply: str | None) -> None:
    try:
        title_generate(session_id=session_id, model=model, reply=reply)
    finally:
        connections.close_all()


def title_generate(*, session_id: int, model: str, reply: str | None = None, publish: bool = True) -> str | None:
    """Write the title of a session claimed for it (``title_source`` "pending"); the title, or None if the user
    set one meanwhile. Never raises: a failed call gives the offline title. With ``publish``, every socket on
    the session gets ``session.updated``."""
    try:
        session = Session.objects.select_related("version").get(pk=session_id)
        first = (
            Message.objects.filter(session_id=session_id, role=Message.Role.USER)
            .order_by("seq")
            .values_list("content", flat=True)
            .first()
        )
        title = ""
        if not llm.is_offline(model):
            title = _title_call(session, model, first or "", reply or "")
        title = title or offline_title(first or reply)
        written = Session.objects.filter(pk=session_id, title_source="pending").update(title=title, title_source="auto")
        if not written:
            return None  # the user named it meanwhile: theirs stays
        session.title, session.title_source = title, "auto"
        if publish:
            publish_update(session)
        return title
    except Exception:
        logger.exception("chatmodel: could not title session %s", session_id)
        # Free the claim, so a later run tries again; a title the user set meanwhile is left alone.
        Session.objects.filter(pk=session_id, title_source="pending").update(title_source="")
        return None


def _title_call(session: Session, model: str, first: str, reply: str) -> str:
    """One short call of the title model; "" when it fails (logged, scrubbed) or answers nothing usable."""
    version = session.version
    transcript = f"User: {first[:TITLE_INPUT_CHARS]}\n\nAssistant: {reply[:TITLE_INPUT_CHARS]}"
    request: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": conf.TITLE_PROMPT},
            {"role": "user", "content": transcript},
        ],
        "max_tokens": TITLE_MAX_TOKENS,
        "timeout": conf.TIMEOUT,
        "num_retries": 0,  # a title is not worth a retry storm; the offline title stands in
    }
    # The version's api_base serves its own model; another title model uses LiteLLM's default for it.
    if model == version.model and version.params.get("api_base"):
        request["api_base"] = version.params["api_base"]
    try:
        completion = llm.complete(request)
    except Exception as exc:
        error = llm.map_exception(exc)
        logger.warning(
            "chatmodel: the title model %s failed for session %s (%s: %s); using the first words of the chat",
            model,
            session.uuid,
            error.code,
            llm.scrub(error.message, llm.request_secrets(request)),
        )
        return ""
    return clean_model_title(completion.content)
