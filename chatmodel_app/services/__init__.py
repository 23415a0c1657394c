"""The one pipeline every front door uses, a module per concern.

- ``sessions``: the one way to create a session, and get-or-create.
- ``messages``: adding messages (validated, gapless ``seq``, refused while a run is active).
- ``leases``: one active run per session across processes (take, renew, release, expire), and the
  per-process ``keeper`` that batches renewals and cancel checks.
- ``runs``: a run's start, finish and failure, cancel, and the non-streamed drivers ``run``/``arun``.
- ``streaming``: the stream state machine and its drivers ``run_stream``/``arun_stream``.
- ``summaries``: rolling summaries for truncation "summary".
- ``versions``: the one way to create a version; drafts, copies, publishing with A/B ratios.
- ``transfer``: export and import of chat models.
- ``conversations``: titles set by users, archive, delete, and the list by last activity with search.
- ``titles``: the title made after a session's first exchange (``run_finished``), never failing a run.
- ``feedback``: thumbs up/down with a comment on replies, from the session's user.
- ``labels``: named sets of versions (``production`` is what "deploy" serves, plus ``staging``...), moves and
  one-step rollbacks, each recorded as a publish.

Reads live in ``chatmodel_app.selectors``; input rules in ``chatmodel_app.validation``.

Process-wide state, all of it (each is per worker process; nothing here is shared across processes,
which coordinate through the database and the channel layer only):

- ``services.leases.keeper``: this process's active runs and the runs it was asked to cancel.
- ``chatmodel_app.events._home_loop``: the ASGI server's event loop, where the in-memory channel layer lives.
- ``chatmodel_app.consumers``: each socket's running run task (per consumer instance).
- ``chatmodel_app.transports``: the ChatModel shim's worker thread (sync calls from async code) and its
  HTTP clients, one per base URL and event loop.
- ``chatmodel_app.llm``: LiteLLM (imported once, lazily) and the lean client's HTTP clients per event loop.
"""

from __future__ import annotations

from ..selectors import chat_model_list, message_page, session_list
from . import leases
from .branches import branch_switch, message_edit, regenerate_prepare, session_fork
from .labels import label_delete, label_move, label_rollback
from .messages import messages_add
from .run_context import RunContext
from .runs import arun, error_response, run, run_cancel, run_fail, run_finish, run_start
from .sessions import session_create, session_get_or_create, session_open
from .streaming import arun_stream, final_chunk, run_stream
from .summaries import summary_refresh
from .transfer import EXPORT_FORMAT, ImportReport, chat_models_export, chat_models_import
from .versions import (
    version_copy,
    version_create,
    version_in_use,
    version_publish,
    version_unpublish,
    version_update,
    versions_publish,
)

__all__ = [
    "EXPORT_FORMAT",
    "ImportReport",
    "RunContext",
    "arun",
    "arun_stream",
    "branch_switch",
    "chat_model_list",
    "chat_models_export",
    "chat_models_import",
    "error_response",
    "final_chunk",
    "label_delete",
    "label_move",
    "label_rollback",
    "leases",
    "message_edit",
    "message_page",
    "messages_add",
    "regenerate_prepare",
    "run",
    "run_cancel",
    "run_fail",
    "run_finish",
    "run_start",
    "run_stream",
    "session_create",
    "session_fork",
    "session_get_or_create",
    "session_list",
    "session_open",
    "summary_refresh",
    "version_copy",
    "version_create",
    "version_in_use",
    "version_publish",
    "version_unpublish",
    "version_update",
    "versions_publish",
]
