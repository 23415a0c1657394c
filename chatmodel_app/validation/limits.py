"""Limits on any JSON a caller sends: depth, size, NUL and lone surrogates, unknown keys."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..exceptions import ChatModelError

# --- limits on any JSON a caller sends ------------------------------------------------------------
# Checked before any other rule, any JSON Schema validation or any rendering: a deeply nested value
# makes recursive code (jsonschema, json.dumps, templates) slow or crash with RecursionError.

# How deep a caller's JSON may nest (a tool's parameters schema, message metadata, tool arguments).
MAX_JSON_DEPTH = 32
# Serialized size of one tool schema, one message's metadata, or one call's arguments, in characters.
MAX_JSON_CHARS = 64_000
# Size of all of a run's functions and tools together.
MAX_TOOLS_CHARS = 256_000


def _at(where: str, text: str) -> str:
    """``text`` about the value at ``where``; a serializer field that already names it passes ``""``."""
    return f"{where}: {text}" if where else text[:1].upper() + text[1:]


def text_check(value: str, where: str, error: type[ChatModelError]) -> None:
    """Refuse NUL (U+0000) and lone surrogates: PostgreSQL cannot store the one, UTF-8 cannot encode the other."""
    if "\x00" in value:
        raise error(_at(where, "contains a NUL character (U+0000), which cannot be stored."), field=_field(where))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(
            _at(where, "contains a lone surrogate (half of a UTF-16 pair), which is not valid text."),
            field=_field(where),
        ) from None


def json_check(
    value: Any,
    where: str,
    error: type[ChatModelError],
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_chars: int | None = MAX_JSON_CHARS,
) -> None:
    """Bound a JSON value's nesting depth and size, and check every string and key in it with ``text_check``.

    Walks the value without recursion (so any depth is safe) and raises ``error`` at the first fault.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    chars = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                raise error(_at(where, f"nested more than {max_depth} levels deep."), field=_field(where))
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise error(_at(where, f"has a key that is not a string: {key!r}."), field=_field(where))
                    text_check(key, f"{where} (a key)" if where else "a key", error)
                    chars += len(key) + 4
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
            chars += 2
        elif isinstance(item, str):
            text_check(item, where, error)
            chars += len(item) + 2
        elif item is None or isinstance(item, bool | int):
            chars += 5
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise error(_at(where, f"holds {item!r}, which is not valid JSON."), field=_field(where))
            chars += 8
        else:
            raise error(_at(where, f"holds a {type(item).__name__}, which is not a JSON value."), field=_field(where))
        if max_chars is not None and chars > max_chars:
            raise error(_at(where, f"larger than {max_chars} characters as JSON."), field=_field(where))


def json_too_deep(value: Any, max_depth: int) -> bool:
    """Whether a parsed JSON value nests deeper than ``max_depth`` (without recursion; Python 3.13's decoder
    parses any depth, where 3.11 and 3.12 raised RecursionError)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def keys_check(
    item: Mapping[Any, Any], allowed: frozenset[str] | set[str], where: str, error: type[ChatModelError]
) -> None:
    """Refuse keys of ``item`` outside ``allowed``, naming them: a typo must not be ignored silently."""
    unknown = set(item) - allowed
    if unknown:
        raise error(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))}.", field=_field(where))


def _field(where: str) -> str | None:
    """The request field a location names: ``functions[0].parameters`` -> ``functions``."""
    return re.split(r"[\[. ]", where, maxsplit=1)[0] or None
