"""The system prompt a session's runs send: the version's prompt with the session's variable values in it.

Substitution is one regex replacement (``validation.PLACEHOLDER``) of the version's declared names by plain
strings, in one pass: no template engine, so nothing in a prompt or a value can reach an attribute, a filter,
a tag or any code, and a value that itself looks like ``{{ name }}`` is inserted as written, never expanded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..validation import PLACEHOLDER

if TYPE_CHECKING:
    from ..models import Session, Version


def prompt_render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{{ name }}`` whose name is in ``values`` replaced by its value; the rest as written."""
    if not values or not template:
        return template

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return value if isinstance(value, str) else match.group(0)

    return PLACEHOLDER.sub(replace, template)


def variable_values(version: Version, session: Session | None) -> dict[str, str]:
    """The values a session's runs use: the session's, the version's defaults for any it lacks."""
    declared: list[Mapping[str, Any]] = version.variables or []
    given: Mapping[str, Any] = (session.variables or {}) if session is not None else {}
    return {d["name"]: given.get(d["name"], d.get("default", "")) for d in declared}


def system_prompt_for(version: Version, session: Session | None = None) -> str:
    """The system prompt a run of ``session`` sends; without a session, the version's template as written."""
    if session is None or not version.variables:
        return version.system_prompt
    return prompt_render(version.system_prompt, variable_values(version, session))
