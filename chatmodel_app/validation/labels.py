"""Label names: where a version spec is not "deploy", "latest" or a number, it is a label."""

from __future__ import annotations

import re
from typing import Any

from ..exceptions import InvalidParams

# The label that "deploy" means: the versions' is_published and ratio.
PRODUCTION = "production"
# Lowercase letters, digits, "-" and "_", starting with a letter: never a number, never a version spec keyword.
LABEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,49}\Z")
# Version specs that are not labels.
RESERVED_LABELS = frozenset({"deploy", "latest"})


def is_label_name(value: Any) -> bool:
    """Whether ``value`` has the shape of a label name (``production`` included, "deploy" and "latest" not)."""
    return isinstance(value, str) and bool(LABEL_NAME.match(value)) and value not in RESERVED_LABELS


def label_name_clean(value: Any) -> str:
    """A label name to create or move: lowercase letters, digits, '-' or '_', starting with a letter."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParams("A label needs a name, e.g. 'staging'.", field="label")
    name = value.strip()
    if name in RESERVED_LABELS:
        raise InvalidParams(
            f"{name!r} cannot be a label name: it is a version spec of its own ('deploy' is the production label).",
            field="label",
        )
    if not LABEL_NAME.match(name):
        raise InvalidParams(
            "A label name is 1-50 lowercase letters, digits, '-' or '_', starting with a letter "
            f"(so it is never a version number); got {name!r}.",
            field="label",
        )
    return name
