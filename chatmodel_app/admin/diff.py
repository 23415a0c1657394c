"""The diff engine of "Compare versions": pure functions over plain values (strings, and dicts of version fields).

Nothing here touches the database or the admin, so it is tested on its own; the page hands it two
dicts from ``FIELDS`` and renders the sections it returns.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

_WORDS = re.compile(r"\s+|\w+|[^\w\s]")
# Unchanged runs longer than this are folded, keeping this much context on each side.
CONTEXT = 3

# Shown as a table of values, each marked when it differs.
SETTINGS = (
    ("model", "Model"),
    ("truncation", "Truncation"),
    ("truncation_last_messages", "Keep last N messages"),
    ("context_window", "Context window"),
    ("summary_model", "Summary model"),
    ("fallbacks", "Fallbacks"),
    ("tags", "Tags"),
    ("memo", "Memo"),
    ("is_published", "Published"),
    ("ratio", "A/B ratio"),
)
# The version fields diff_sections reads.
FIELDS = ("system_prompt", "variables", "params", "tools", *(name for name, _ in SETTINGS))


def intraline(old: str, new: str) -> tuple[SafeString, SafeString]:
    """Both lines as HTML, the words that differ marked with <del>/<ins>."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    left, right = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            left.append(escape("".join(a[i1:i2])))
            right.append(escape("".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append(format_html("<del>{}</del>", "".join(a[i1:i2])))
        if j2 > j1:
            right.append(format_html("<ins>{}</ins>", "".join(b[j1:j2])))
    return mark_safe("".join(left)), mark_safe("".join(right))  # noqa: S308 - every part was escaped above


def side_by_side(old: str, new: str, *, fold: bool = True) -> list[dict[str, Any]]:
    """Rows of a side-by-side line diff: kind (equal/replace/delete/insert/fold), line numbers and HTML."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[dict[str, Any]] = []
    opcodes = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            n = i2 - i1
            # Context lines after the previous change and before the next one; the middle folds.
            head = CONTEXT if index > 0 else 0
            tail = CONTEXT if index < len(opcodes) - 1 else 0
            folded = fold and n > head + tail + 1
            shown = [*range(head), *range(n - tail, n)] if folded else list(range(n))
            for position, k in enumerate(shown):
                if folded and position == head:
                    rows.append({"kind": "fold", "count": n - head - tail})
                rows.append(
                    {"kind": "equal", "ln": i1 + k + 1, "left": a[i1 + k], "rn": j1 + k + 1, "right": b[j1 + k]}
                )
            if folded and not tail:
                rows.append({"kind": "fold", "count": n - head - tail})
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            left = a[i1 + k] if i1 + k < i2 else None
            right = b[j1 + k] if j1 + k < j2 else None
            row: dict[str, Any] = {
                "ln": i1 + k + 1 if left is not None else None,
                "rn": j1 + k + 1 if right is not None else None,
            }
            if left is not None and right is not None:
                row["kind"] = "replace"
                row["left"], row["right"] = intraline(left, right)
            elif left is None:
                row.update(kind="insert", left=None, right=right)
            else:
                row.update(kind="delete", left=left, right=None)
            rows.append(row)
    return rows


def shown(value: Any) -> str:
    """A setting's value as the settings table shows it."""
    if value in (None, "", []):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def pretty(value: Any) -> str:
    """JSON indented, keys sorted, so that equal values give equal text and a change shows on its own line."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def diff_sections(a: Mapping[str, Any], b: Mapping[str, Any], *, fold: bool = True) -> list[dict[str, Any]]:
    """The sections of a comparison of two versions' ``FIELDS``: system prompt, variables, settings, params, tools."""
    settings_rows = [
        {"label": label, "left": shown(a[name]), "right": shown(b[name]), "changed": a[name] != b[name]}
        for name, label in SETTINGS
    ]
    texts = [
        ("system_prompt", "System prompt", a["system_prompt"], b["system_prompt"]),
        ("params", "Params", pretty(a["params"]), pretty(b["params"])),
        ("tools", "Functions / tools", pretty(a["tools"]), pretty(b["tools"])),
    ]
    # The prompt variables' declarations (name, default, required, description), when either version has some.
    declared = (a.get("variables") or [], b.get("variables") or [])
    if any(declared):
        texts.insert(1, ("variables", "Prompt variables", pretty(declared[0]), pretty(declared[1])))
    sections = [
        {"id": key, "title": title, "same": left == right, "rows": side_by_side(left, right, fold=fold)}
        for key, title, left, right in texts
    ]
    settings = {"id": "settings", "title": "Model and settings", "table": settings_rows}
    prompt_sections = 2 if any(declared) else 1
    return [*sections[:prompt_sections], settings, *sections[prompt_sections:]]
