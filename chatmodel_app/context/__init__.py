"""Which history goes to the model: the system prompt, the session's summary, and the newest messages that fit.

One entry point, ``context_select``, reached by every front door through ``services.run_start``:

* the budget is the model's max input tokens minus the reply's reserve, the system prompt and the
  tool schemas (``input_budget``);
* the session's tail is read newest first over the ``(session, seq)`` unique index: light columns
  (seq, role, token count, call ids) in a page sized so it covers the whole window, then the text of
  just the rows that are sent. A run reads O(window) rows, whatever the session's length;
* an assistant message with tool calls goes with all its results or not at all, and a result never
  goes without its call;
* each version picks a strategy: ``auto`` (the newest that fit), ``last_messages`` (at most N) or
  ``summary`` (what falls out of the window is condensed into ``Session.summary``; the model call
  that writes it is ``services.summary_refresh``).

The package: ``budget`` (token accounting, the window and the reply's reserve), ``selection`` (the
strategies and the units), ``reads`` (the bounded reads), ``summaries`` (the summary's helpers).
"""

from __future__ import annotations

from .budget import (
    FRAMING,
    REPLY_PRIMING,
    context_window,
    count_content,
    input_budget,
    message_tokens,
    reply_reserve,
    request_params,
    text_tokens,
    tools_tokens,
)
from .reads import history_range
from .selection import Selection, Unit, choose_units, context_select, select_history
from .summaries import (
    SUMMARY_HEADER,
    summary_chunk_budget,
    summary_chunks,
    summary_clip,
    summary_input,
    summary_message,
    summary_model,
    summary_tokens,
    transcript_line,
)

__all__ = [
    "FRAMING",
    "REPLY_PRIMING",
    "SUMMARY_HEADER",
    "Selection",
    "Unit",
    "choose_units",
    "context_select",
    "context_window",
    "count_content",
    "history_range",
    "input_budget",
    "message_tokens",
    "reply_reserve",
    "request_params",
    "select_history",
    "summary_chunk_budget",
    "summary_chunks",
    "summary_clip",
    "summary_input",
    "summary_message",
    "summary_model",
    "summary_tokens",
    "text_tokens",
    "tools_tokens",
    "transcript_line",
]
