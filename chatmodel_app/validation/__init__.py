"""Every rule on input, written once and used by every front door.

REST serializers, the websocket consumer, the Python API (through ``services``) and the admin forms
all call these functions, so one bad input gets the same error code whichever door it came through.
Each function raises ``InvalidParams`` or ``InvalidMessages`` (with ``field`` set when one request
field is at fault); doors tell errors apart by that type or its ``code``, never by the wording.

Pure checks: no ORM query, no litellm. ``models`` is imported only for ``Version`` (its params and
truncation choices).
"""

from __future__ import annotations

from .conversations import (
    MAX_FEEDBACK_COMMENT_CHARS,
    MAX_SEARCH_CHARS,
    MAX_TITLE_CHARS,
    archived_clean,
    archived_filter_clean,
    feedback_comment_clean,
    feedback_rating_clean,
    search_clean,
    title_clean,
)
from .labels import LABEL_NAME, PRODUCTION, RESERVED_LABELS, is_label_name, label_name_clean
from .limits import MAX_JSON_CHARS, MAX_JSON_DEPTH, MAX_TOOLS_CHARS, json_check, json_too_deep, keys_check, text_check
from .messages import message_seq_clean, validate_messages
from .runs import PARAM_RANGES, RUN_OPTIONS, params_refused, run_request_params, validate_run_params
from .tools import json_schemas_check, normalise_tools, validate_tool, validate_tools
from .variables import (
    MAX_VARIABLE_CHARS,
    MAX_VARIABLES,
    PLACEHOLDER,
    placeholders,
    placeholders_check,
    session_variables_clean,
    variables_declarations_clean,
)
from .versions import (
    REDACTED,
    SECRET_PARAMS,
    SLUG,
    VERSION_FIELDS,
    check_truncation,
    is_secret_param,
    params_redacted,
    ratios_clean,
    secret_param_paths,
    version_field_clean,
    version_fields_clean,
    version_params_validate,
)

__all__ = [
    "LABEL_NAME",
    "MAX_VARIABLES",
    "MAX_VARIABLE_CHARS",
    "PLACEHOLDER",
    "PRODUCTION",
    "RESERVED_LABELS",
    "is_label_name",
    "label_name_clean",
    "message_seq_clean",
    "placeholders",
    "placeholders_check",
    "session_variables_clean",
    "variables_declarations_clean",
    "MAX_FEEDBACK_COMMENT_CHARS",
    "MAX_SEARCH_CHARS",
    "MAX_TITLE_CHARS",
    "archived_clean",
    "archived_filter_clean",
    "feedback_comment_clean",
    "feedback_rating_clean",
    "search_clean",
    "title_clean",
    "MAX_JSON_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_TOOLS_CHARS",
    "REDACTED",
    "PARAM_RANGES",
    "RUN_OPTIONS",
    "SECRET_PARAMS",
    "SLUG",
    "VERSION_FIELDS",
    "check_truncation",
    "is_secret_param",
    "json_check",
    "json_schemas_check",
    "json_too_deep",
    "keys_check",
    "normalise_tools",
    "params_redacted",
    "params_refused",
    "ratios_clean",
    "run_request_params",
    "secret_param_paths",
    "text_check",
    "validate_messages",
    "validate_run_params",
    "validate_tool",
    "validate_tools",
    "version_field_clean",
    "version_fields_clean",
    "version_params_validate",
]
