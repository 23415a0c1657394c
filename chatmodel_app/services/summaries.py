"""Rolling summaries (truncation "summary"): fold the messages that fell out of the window into one text."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from .. import context, llm
from ..conf import conf
from ..context import Selection
from ..llm import LLMError
from ..models import Run, Session, Version
from . import leases

logger = logging.getLogger("chatmodel_app")

# At most this many summary calls in one run: a session that meets its window with a long history
# nobody summarised yet (the strategy was switched on late) gets the newest part condensed, not all.
_SUMMARY_MAX_CHUNKS = 4


def summary_refresh(*, run: Run, session: Session, version: Version, selection: Selection) -> Selection:
    """Fold the messages that fell out of the window into the session's summary, and send it with the rest.

    Called by ``run_start`` under the run's claim (for ``arun``, in its worker thread). The summary
    model reads the summary so far and the newly dropped messages, one chunk that fits its window per
    call. A failed call never fails the run: the run sends what plain truncation picks, with the
    summary as it was, and says so in the Run's ``error_log``.
    """
    model = context.summary_model(version)
    after = selection.summary_until_seq or 0
    upto = selection.summarise_upto or after
    text, done = selection.summary, after
    try:
        chunk_tokens = context.summary_chunk_budget(version, model)
        if chunk_tokens < 64:
            raise LLMError(
                "summary_window",
                f"the summary model {model!r} has no room for a transcript: lower CHATMODEL_SUMMARY_MAX_TOKENS",
            )
        dropped, skipped = context.history_range(
            session=session,
            model=version.model,
            after_seq=after,
            upto_seq=upto,
            max_tokens=chunk_tokens * _SUMMARY_MAX_CHUNKS,
            message_cap=chunk_tokens,
        )
        chunks, left_out = context.summary_chunks(dropped, chunk_tokens, _SUMMARY_MAX_CHUNKS)
        if skipped or left_out:
            logger.info(
                "chatmodel run %s: messages %s-%s are more than %s summary calls back; the summary skips them",
                run.uuid,
                after + 1,
                chunks[0][0]["seq"] - 1,
                _SUMMARY_MAX_CHUNKS,
            )
        for chunk in chunks:
            leases.renew(run_uuids=[run.uuid])  # several calls may outlast the lease
            text = _summary_call(version, model, text, chunk, chunk_tokens)
            done = chunk[-1]["seq"]
        done = upto
    except Exception as exc:
        error = exc if isinstance(exc, LLMError) else llm.map_exception(exc)
        log = (
            f"summary_failed: messages {after + 1}-{upto} could not be summarised ({error.code}: {error.message}). "
            "This run used plain truncation; the next run tries again."
        )
        logger.warning("chatmodel run %s: %s", run.uuid, log)
        with contextlib.suppress(DatabaseError):
            Run.objects.filter(pk=run.pk).update(error_log=log)
            if done > after:
                _summary_store(run, session, text, done)  # keep what was condensed before the failure
        run.error_log = log
        selection.set_summary(text, context.summary_tokens(version.model, text))
        return selection
    _summary_store(run, session, text, done)
    selection.drop_oldest(len(selection.units) - selection.keep)
    selection.set_summary(text, context.summary_tokens(version.model, text))
    return selection


def _summary_call(version: Version, model: str, previous: str, chunk: list[Any], chunk_tokens: int) -> str:
    """One call of the summary model: the summary so far plus ``chunk`` -> the new summary."""
    request: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": conf.SUMMARY_PROMPT},
            {"role": "user", "content": context.summary_input(previous, chunk, chunk_tokens)},
        ],
        "max_tokens": conf.SUMMARY_MAX_TOKENS,
        "timeout": conf.TIMEOUT,
        "num_retries": conf.NUM_RETRIES,
    }
    # The version's api_base serves its own model; another summary model uses LiteLLM's default for it.
    if model == version.model and version.params.get("api_base"):
        request["api_base"] = version.params["api_base"]
    completion = llm.complete(request)
    text = (completion.content or "").strip()
    if not text:
        raise LLMError("empty_summary", "the summary model answered with no text")
    logger.info("chatmodel summary by %s: %s", model, completion.usage)
    return context.summary_clip(version.model, text)


def _summary_store(run: Run, session: Session, text: str, until_seq: int) -> None:
    Session.objects.filter(pk=session.pk, active_run_uuid=run.uuid).update(
        summary=text, summary_until_seq=until_seq, updated_at=timezone.now()
    )
    session.summary, session.summary_until_seq = text, until_seq
