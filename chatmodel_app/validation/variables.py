"""Prompt variables: a version's declarations, the placeholders its system prompt uses, and a session's values.

A placeholder is ``{{ name }}`` (spaces inside the braces optional) where ``name`` is a declared identifier.
Nothing else between double braces is a placeholder: ``{{ x.__class__ }}``, ``{{ x|upper }}`` or ``{% if %}``
are plain text, sent as written. Substitution (``context/prompt.py``) is one regex replacement of declared
names by strings, so a prompt can never reach an attribute, a filter, a tag or any code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import InvalidParams
from .limits import MAX_JSON_CHARS, keys_check, text_check

# An identifier: ASCII letters, digits and "_", not starting with a digit.
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# {{ name }} with an identifier inside, and nothing else: the only syntax substitution knows.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
# How many variables a version may declare.
MAX_VARIABLES = 50
# The length of one value (a session's or a default), in characters.
MAX_VARIABLE_CHARS = 10_000
# The length of all of a session's values together, in characters.
MAX_VARIABLES_TOTAL_CHARS = MAX_JSON_CHARS
MAX_VARIABLE_DESCRIPTION_CHARS = 500
_DECLARATION_KEYS = frozenset({"name", "default", "required", "description"})


def _error(message: str) -> InvalidParams:
    return InvalidParams(message, field="variables")


def placeholders(text: str) -> list[str]:
    """The variable names ``text`` uses as ``{{ name }}``, each once, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(text or "")))


def variables_declarations_clean(value: Any) -> list[dict[str, Any]]:
    """Check a version's declarations; return them with every key set (name, default, required, description).

    ``value`` is a list of ``{"name": "customer_name", "default": "", "required": true, "description": "..."}``;
    only ``name`` is needed. A required variable has no default: a session must give it.
    """
    if value in (None, ""):
        return []
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise _error('variables must be a list of declarations, e.g. [{"name": "customer_name", "required": true}].')
    if len(value) > MAX_VARIABLES:
        raise _error(f"variables: at most {MAX_VARIABLES} variables; got {len(value)}.")
    clean: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"variables[{i}]"
        if isinstance(item, str):
            item = {"name": item}  # a bare name is an optional variable with an empty default
        if not isinstance(item, Mapping):
            raise _error(f"{where} must be an object with a 'name'.")
        keys_check(item, _DECLARATION_KEYS, where, InvalidParams)
        name = item.get("name")
        if not isinstance(name, str) or not VARIABLE_NAME.match(name):
            raise _error(
                f"{where}.name must be an identifier (letters, digits and '_', not starting with a digit, at most "
                f"64 characters), used in the prompt as {{{{ name }}}}; got {name!r}."
            )
        if name in seen:
            raise _error(f"{where}: variable {name!r} is declared twice.")
        seen.add(name)
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise _error(f"{where}.required must be true or false; got {required!r}.")
        default = item.get("default")
        if default is None:
            default = ""
        if not isinstance(default, str):
            raise _error(f"{where}.default must be text; got {type(default).__name__}.")
        _value_check(default, f"{where}.default")
        if required and default:
            raise _error(f"{where}: {name!r} is required, so it has no default (a session must give its value).")
        description = item.get("description")
        if description is None:
            description = ""
        if not isinstance(description, str) or len(description) > MAX_VARIABLE_DESCRIPTION_CHARS:
            raise _error(f"{where}.description must be text of at most {MAX_VARIABLE_DESCRIPTION_CHARS} characters.")
        text_check(description, f"{where}.description", InvalidParams)
        clean.append({"name": name, "default": default, "required": required, "description": description})
    return clean


def placeholders_check(system_prompt: str, declarations: Sequence[Mapping[str, Any]]) -> None:
    """Every ``{{ name }}`` the system prompt uses must be declared (a typo is an error, not literal text)."""
    declared = {d["name"] for d in declarations}
    undeclared = [name for name in placeholders(system_prompt) if name not in declared]
    if undeclared:
        shown = ", ".join(f"{{{{ {name} }}}}" for name in undeclared)
        raise _error(
            f"The system prompt uses {shown}, which {'is' if len(undeclared) == 1 else 'are'} not declared: "
            "declare each variable (variables) or take the placeholder out of the prompt."
        )


def _value_check(value: str, where: str) -> None:
    if len(value) > MAX_VARIABLE_CHARS:
        raise _error(f"{where} is {len(value)} characters long (at most {MAX_VARIABLE_CHARS}).")
    text_check(value, where, InvalidParams)


def session_variables_clean(declarations: Sequence[Mapping[str, Any]], values: Any) -> dict[str, str]:
    """A session's values for a version's variables: checked, and completed with the defaults.

    Raises InvalidParams (field ``variables``) for a name the version does not declare, a value that is not
    a string or is too long, or a required variable with no value.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise _error('variables must be an object of names and text values, e.g. {"customer_name": "Ada"}.')
    declared = {d["name"]: d for d in declarations}
    unknown = sorted(str(name) for name in values if name not in declared)
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise _error(
            f"Unknown variables: {', '.join(unknown)}. This version declares: {known}."
            if declared
            else f"Unknown variables: {', '.join(unknown)}. This version declares no variables."
        )
    total = 0
    for name, value in values.items():
        if not isinstance(value, str):
            raise _error(f"variables.{name} must be text (a string); got {type(value).__name__}.")
        _value_check(value, f"variables.{name}")
        total += len(value)
    if total > MAX_VARIABLES_TOTAL_CHARS:
        raise _error(f"variables are {total} characters long together (at most {MAX_VARIABLES_TOTAL_CHARS}).")
    missing = [name for name, d in declared.items() if d.get("required") and not values.get(name)]
    if missing:
        raise _error(
            f"Missing required variable{'s' if len(missing) > 1 else ''}: {', '.join(missing)}. "
            "Give {" + ", ".join(f'"{name}": "..."' for name in missing) + "} when the session is created."
        )
    return {name: values[name] if name in values else d.get("default", "") for name, d in declared.items()}
